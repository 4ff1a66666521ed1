#include "server/dataset_service.h"

#include <ATen/ATen.h>

#include "proto/base/status_macros.h"
#include "proto/timestamp.h"
#include "server/dataset_assembly.h"
#include "server/status_util.h"

namespace invnet::server {
namespace {

void EncodeDataset(const DatasetInfo& info, v1::Dataset* proto) {
  proto->set_name(info.name);
  proto->set_dim(info.dim);
  proto->set_num_samples(info.num_samples);
  proto->set_size_bytes(info.size_bytes);
  *proto->mutable_created() = ToProtoTimestamp(info.created);
}

}  // namespace

grpc::Status DatasetServiceImpl::UploadDataset(
    grpc::ServerContext* context, grpc::ServerReader<v1::UploadDatasetRequest>* reader,
    v1::UploadDatasetResponse* response) {
  if (absl::Status s = auth_->Check(*context, "/invnet.v1.DatasetService/UploadDataset"); !s.ok())
    return ToGrpcStatus(s);
  v1::UploadDatasetRequest message;
  if (!reader->Read(&message) || !message.has_header()) {
    return ToGrpcStatus(absl::InvalidArgumentError(
        "upload: the first message must be the header (name, dim, num_samples)"));
  }
  const v1::DatasetHeader header = message.header();
  absl::StatusOr<DatasetAssembler> assembler =
      DatasetAssembler::Create(header, limits_.max_dataset_bytes, limits_.tensors);
  absl::Status status = assembler.status();
  if (status.ok()) status = datasets_->Reserve(header.name());
  if (!status.ok()) return ToGrpcStatus(status);

  // From here on the reservation is released on every path (Save releases it too).
  status = [&]() -> absl::Status {
    while (reader->Read(&message)) INVNET_RETURN_IF_ERROR(assembler->Add(message));
    if (context->IsCancelled()) return absl::CancelledError("upload cancelled by the client");
    INVNET_ASSIGN_OR_RETURN(at::Tensor samples, assembler->Finish());
    INVNET_ASSIGN_OR_RETURN(DatasetInfo info, datasets_->Save(header.name(), samples));
    EncodeDataset(info, response->mutable_dataset());
    return absl::OkStatus();
  }();
  if (!status.ok()) datasets_->Release(header.name());
  return ToGrpcStatus(status);
}

grpc::Status DatasetServiceImpl::ListDatasets(grpc::ServerContext* context,
                                              const v1::ListDatasetsRequest* request,
                                              v1::ListDatasetsResponse* response) {
  if (absl::Status s = auth_->Check(*context, "/invnet.v1.DatasetService/ListDatasets"); !s.ok())
    return ToGrpcStatus(s);
  for (const DatasetInfo& info : datasets_->List()) EncodeDataset(info, response->add_datasets());
  return grpc::Status::OK;
}

grpc::Status DatasetServiceImpl::DeleteDataset(grpc::ServerContext* context,
                                               const v1::DeleteDatasetRequest* request,
                                               v1::DeleteDatasetResponse* response) {
  if (absl::Status s = auth_->Check(*context, "/invnet.v1.DatasetService/DeleteDataset"); !s.ok())
    return ToGrpcStatus(s);
  return ToGrpcStatus(datasets_->Delete(request->name()));
}

}  // namespace invnet::server
