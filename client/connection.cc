#include "client/connection.h"

#include <memory>
#include <utility>

#include "absl/strings/cord.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/client_context.h"
#include "invnet/v1/dataset_service.grpc.pb.h"
#include "invnet/v1/model_service.grpc.pb.h"
#include "invnet/v1/reconstruction_service.grpc.pb.h"
#include "invnet/v1/training_service.grpc.pb.h"
#include "proto/base/request_id.h"

namespace invnet::client {
namespace {

void ApplyDeadline(absl::Duration timeout, grpc::ClientContext* context) {
  if (timeout > absl::ZeroDuration() && timeout != absl::InfiniteDuration()) {
    context->set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  }
}

// One unary call: a fresh context with the method's deadline, status converted.
template <typename Response, typename Call>
absl::StatusOr<Response> CallUnary(absl::Duration timeout, const Call& call) {
  grpc::ClientContext context;
  ApplyDeadline(timeout, &context);
  Response response;
  const grpc::Status status = call(&context, &response);
  if (!status.ok()) return FromGrpcStatus(status, context);
  return response;
}

// The unary methods of `stub` as InvnetConnection overrides, each with its deadline.
#define INVNET_UNARY(Method, stub, timeout)                                                  \
  absl::StatusOr<v1::Method##Response> Method(const v1::Method##Request& request) override { \
    return CallUnary<v1::Method##Response>(                                                  \
        options_.timeout, [&](grpc::ClientContext* context, v1::Method##Response* out) {     \
          return stub->Method(context, request, out);                                        \
        });                                                                                  \
  }

class GrpcConnection final : public InvnetConnection {
 public:
  GrpcConnection(std::shared_ptr<grpc::ChannelInterface> channel, const ClientOptions& options)
      : options_(options),
        reconstruction_(v1::ReconstructionService::NewStub(channel)),
        training_(v1::TrainingService::NewStub(channel)),
        models_(v1::ModelService::NewStub(channel)),
        datasets_(v1::DatasetService::NewStub(channel)),
        health_(grpc::health::v1::Health::NewStub(channel)) {}

  INVNET_UNARY(Reconstruct, reconstruction_, compute_timeout)
  INVNET_UNARY(Forward, reconstruction_, compute_timeout)
  INVNET_UNARY(Estimate, reconstruction_, compute_timeout)
  INVNET_UNARY(DrawTestPairs, reconstruction_, compute_timeout)
  INVNET_UNARY(Evaluate, reconstruction_, compute_timeout)
  INVNET_UNARY(Train, training_, rpc_timeout)
  INVNET_UNARY(GetTrainingJob, training_, rpc_timeout)
  INVNET_UNARY(ListTrainingJobs, training_, rpc_timeout)
  INVNET_UNARY(CancelTrainingJob, training_, rpc_timeout)
  INVNET_UNARY(ListModels, models_, rpc_timeout)
  INVNET_UNARY(GetModel, models_, rpc_timeout)
  INVNET_UNARY(DeleteModel, models_, rpc_timeout)
  INVNET_UNARY(ListDatasets, datasets_, rpc_timeout)
  INVNET_UNARY(DeleteDataset, datasets_, rpc_timeout)

  absl::Status WatchTrainingJob(
      const v1::WatchTrainingJobRequest& request,
      const std::function<void(const v1::WatchTrainingJobResponse&)>& on_update) override {
    grpc::ClientContext context;
    ApplyDeadline(options_.watch_timeout, &context);
    std::unique_ptr<grpc::ClientReader<v1::WatchTrainingJobResponse>> reader =
        training_->WatchTrainingJob(&context, request);
    v1::WatchTrainingJobResponse update;
    while (reader->Read(&update)) on_update(update);
    return FromGrpcStatus(reader->Finish(), context);
  }

  absl::StatusOr<v1::UploadDatasetResponse> UploadDataset(
      const std::function<bool(v1::UploadDatasetRequest*)>& next) override {
    grpc::ClientContext context;
    ApplyDeadline(options_.upload_timeout, &context);
    v1::UploadDatasetResponse response;
    std::unique_ptr<grpc::ClientWriter<v1::UploadDatasetRequest>> writer =
        datasets_->UploadDataset(&context, &response);
    // A failed Write means the server has already ended the call (for example ALREADY_EXISTS
    // after the header): stop sending and let Finish() report why.
    v1::UploadDatasetRequest message;
    bool sent_all = true;
    while (next(&message)) {
      if (!writer->Write(message)) {
        sent_all = false;
        break;
      }
    }
    if (sent_all) writer->WritesDone();
    const grpc::Status status = writer->Finish();
    if (!status.ok()) return FromGrpcStatus(status, context);
    if (!sent_all) {
      return absl::UnknownError("the upload stream closed before every message was sent");
    }
    return response;
  }

  absl::StatusOr<grpc::health::v1::HealthCheckResponse> Check(
      const grpc::health::v1::HealthCheckRequest& request, absl::Duration timeout,
      bool wait_for_ready) override {
    grpc::ClientContext context;
    ApplyDeadline(timeout, &context);
    context.set_wait_for_ready(wait_for_ready);
    grpc::health::v1::HealthCheckResponse response;
    const grpc::Status status = health_->Check(&context, request, &response);
    if (!status.ok()) return FromGrpcStatus(status, context);
    return response;
  }

 private:
  const ClientOptions options_;
  std::unique_ptr<v1::ReconstructionService::Stub> reconstruction_;
  std::unique_ptr<v1::TrainingService::Stub> training_;
  std::unique_ptr<v1::ModelService::Stub> models_;
  std::unique_ptr<v1::DatasetService::Stub> datasets_;
  std::unique_ptr<grpc::health::v1::Health::Stub> health_;
};

#undef INVNET_UNARY

}  // namespace

absl::Status FromGrpcStatus(const grpc::Status& status) {
  // grpc::StatusCode and absl::StatusCode share the canonical numbering (0..16).
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

absl::Status FromGrpcStatus(const grpc::Status& status, const grpc::ClientContext& context) {
  absl::Status converted = FromGrpcStatus(status);
  if (converted.ok()) return converted;
  const auto& metadata = context.GetServerInitialMetadata();
  const auto id = metadata.find(kRequestIdMetadata);
  if (id != metadata.end()) {
    converted.SetPayload(kRequestIdPayload,
                         absl::Cord(absl::string_view(id->second.data(), id->second.size())));
  }
  return converted;
}

std::string RequestIdOf(const absl::Status& status) {
  const absl::optional<absl::Cord> id = status.GetPayload(kRequestIdPayload);
  return id.has_value() ? std::string(*id) : "";
}

std::shared_ptr<InvnetConnection> MakeGrpcConnection(
    std::shared_ptr<grpc::ChannelInterface> channel, const ClientOptions& options) {
  return std::make_shared<GrpcConnection>(std::move(channel), options);
}

}  // namespace invnet::client
