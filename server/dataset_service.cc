#include <ATen/ATen.h>

#include "absl/strings/str_cat.h"
#include "models/status_macros.h"
#include "server/names.h"
#include "server/services.h"
#include "server/status_util.h"

namespace invnet::server {
namespace {

void EncodeDataset(const DatasetInfo& info, v1::Dataset* proto) {
  proto->set_name(info.name);
  proto->set_dim(info.dim);
  proto->set_num_samples(info.num_samples);
  proto->set_size_bytes(info.size_bytes);
  const int64_t nanos = absl::ToUnixNanos(info.created);
  proto->mutable_created()->set_seconds(nanos / 1000000000);
  proto->mutable_created()->set_nanos(static_cast<int32_t>(nanos % 1000000000));
}

}  // namespace

grpc::Status DatasetServiceImpl::UploadDataset(
    grpc::ServerContext* context, grpc::ServerReader<v1::UploadDatasetRequest>* reader,
    v1::UploadDatasetResponse* response) {
  if (absl::Status s = auth_->Check(*context, Scope::kAdmin); !s.ok()) return ToGrpcStatus(s);
  v1::UploadDatasetRequest message;
  if (!reader->Read(&message) || !message.has_header()) {
    return ToGrpcStatus(absl::InvalidArgumentError(
        "upload: the first message must be the header (name, dim, num_samples)"));
  }
  const v1::DatasetHeader header = message.header();
  absl::Status status = ValidateName(header.name(), "header.name");
  if (status.ok() && (header.dim() < 1 || header.dim() > 65536)) {
    status = absl::InvalidArgumentError(
        absl::StrCat("header.dim: ", header.dim(), " must lie in [1, 65536]"));
  }
  if (status.ok() && header.num_samples() < 1) {
    status = absl::InvalidArgumentError(
        absl::StrCat("header.num_samples: ", header.num_samples(), " must be >= 1"));
  }
  if (status.ok() &&
      header.num_samples() > limits_.max_dataset_bytes / (4 * header.dim())) {
    status = absl::ResourceExhaustedError(absl::StrCat(
        "header: ", header.num_samples(), " samples of ", header.dim(),
        " floats exceed the server's dataset limit of ", limits_.max_dataset_bytes, " bytes"));
  }
  if (status.ok()) status = datasets_->Reserve(header.name());
  if (!status.ok()) return ToGrpcStatus(status);

  // From here on the reservation is released on every path (Save releases it too).
  status = [&]() -> absl::Status {
    at::Tensor samples = at::empty({header.num_samples(), header.dim()}, at::kFloat);
    int64_t filled = 0;
    int64_t chunk_index = 0;
    while (reader->Read(&message)) {
      if (!message.has_chunk()) {
        return absl::InvalidArgumentError(
            absl::StrCat("upload: message ", chunk_index + 1, " must be a chunk"));
      }
      INVNET_ASSIGN_OR_RETURN(
          at::Tensor chunk,
          DecodeBatch(message.chunk(), header.dim(), absl::StrCat("chunk ", chunk_index),
                      limits_.tensors));
      if (filled + chunk.size(0) > header.num_samples()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "chunk ", chunk_index, ": more samples than header.num_samples = ",
            header.num_samples()));
      }
      samples.narrow(0, filled, chunk.size(0)).copy_(chunk);
      filled += chunk.size(0);
      ++chunk_index;
    }
    if (context->IsCancelled()) return absl::CancelledError("upload cancelled by the client");
    if (filled != header.num_samples()) {
      return absl::InvalidArgumentError(absl::StrCat("upload: received ", filled,
                                                     " samples, header.num_samples says ",
                                                     header.num_samples()));
    }
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
  if (absl::Status s = auth_->Check(*context, Scope::kInfer); !s.ok()) return ToGrpcStatus(s);
  for (const DatasetInfo& info : datasets_->List()) EncodeDataset(info, response->add_datasets());
  return grpc::Status::OK;
}

grpc::Status DatasetServiceImpl::DeleteDataset(grpc::ServerContext* context,
                                               const v1::DeleteDatasetRequest* request,
                                               v1::DeleteDatasetResponse* response) {
  if (absl::Status s = auth_->Check(*context, Scope::kAdmin); !s.ok()) return ToGrpcStatus(s);
  return ToGrpcStatus(datasets_->Delete(request->name()));
}

}  // namespace invnet::server
