#include "server/model_service.h"

#include <cmath>

#include "absl/time/time.h"
#include "proto/timestamp.h"
#include "server/names.h"
#include "server/spec_codec.h"
#include "server/status_util.h"

namespace invnet::server {

void EncodeModelVersion(const HostedModel& model, v1::ModelVersion* proto) {
  proto->set_name(model.name);
  proto->set_version(model.version);
  *proto->mutable_created() = ToProtoTimestamp(model.created);
  EncodeProblem(model.record.problem, proto->mutable_problem());
  proto->set_preset(model.record.problem.preset);
  EncodeArchitecture(model.record.architecture, proto->mutable_architecture());
  EncodeTraining(model.record.training, proto->mutable_training());
  for (const auto& [name, value] : model.record.metrics) (*proto->mutable_metrics())[name] = value;
  for (double bound : model.certificate.block_bounds) proto->add_block_lipschitz(bound);
  proto->set_lower_lipschitz(model.certificate.lower_lipschitz);
  proto->set_upper_lipschitz(model.certificate.upper_lipschitz);
  proto->set_measurement_dim(model.measurement_dim());
  auto job = model.record.labels.find("job_id");
  if (job != model.record.labels.end()) proto->set_job_id(job->second);
  proto->set_size_bytes(model.size_bytes);
  for (std::string& warning : TrainingWarnings(model.record.problem, model.record.training)) {
    proto->add_warnings(std::move(warning));
  }
  for (const auto& [name, values] : model.record.curves) {
    v1::Curve* curve = proto->add_curves();
    curve->set_name(name);
    curve->mutable_values()->Add(values.begin(), values.end());
  }
}

grpc::Status ModelServiceImpl::ListModels(grpc::ServerContext* context,
                                          const v1::ListModelsRequest* request,
                                          v1::ListModelsResponse* response) {
  if (absl::Status s = auth_->Check(*context, "/invnet.v1.ModelService/ListModels"); !s.ok())
    return ToGrpcStatus(s);
  v1::Model* current = nullptr;
  for (const auto& model : models_->List()) {  // by name, then version
    if (current == nullptr || current->name() != model->name) {
      current = response->add_models();
      current->set_name(model->name);
    }
    EncodeModelVersion(*model, current->add_versions());
  }
  return grpc::Status::OK;
}

grpc::Status ModelServiceImpl::GetModel(grpc::ServerContext* context,
                                        const v1::GetModelRequest* request,
                                        v1::GetModelResponse* response) {
  if (absl::Status s = auth_->Check(*context, "/invnet.v1.ModelService/GetModel"); !s.ok())
    return ToGrpcStatus(s);
  absl::Status valid = ValidateName(request->name(), "name");
  if (!valid.ok()) return ToGrpcStatus(valid);
  auto versions = models_->Versions(request->name());
  if (!versions.ok()) return ToGrpcStatus(versions.status());
  response->mutable_model()->set_name(request->name());
  for (const auto& model : *versions) {
    EncodeModelVersion(*model, response->mutable_model()->add_versions());
  }
  return grpc::Status::OK;
}

grpc::Status ModelServiceImpl::DeleteModel(grpc::ServerContext* context,
                                           const v1::DeleteModelRequest* request,
                                           v1::DeleteModelResponse* response) {
  if (absl::Status s = auth_->Check(*context, "/invnet.v1.ModelService/DeleteModel"); !s.ok())
    return ToGrpcStatus(s);
  if (request->all_versions() == (request->version() != 0)) {
    return ToGrpcStatus(absl::InvalidArgumentError(
        "version: give the version to delete (>= 1), or set all_versions and leave version 0"));
  }
  if (request->version() < 0) {
    return ToGrpcStatus(absl::InvalidArgumentError("version: must be >= 1"));
  }
  return ToGrpcStatus(models_->Delete(request->name(), request->version()));
}

}  // namespace invnet::server
