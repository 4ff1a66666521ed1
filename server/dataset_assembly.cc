#include "server/dataset_assembly.h"

#include <ATen/ATen.h>

#include "absl/strings/str_cat.h"
#include "proto/base/status_macros.h"
#include "server/names.h"

namespace invnet::server {

absl::StatusOr<DatasetAssembler> DatasetAssembler::Create(const v1::DatasetHeader& header,
                                                          int64_t max_dataset_bytes,
                                                          const TensorLimits& tensor_limits) {
  INVNET_RETURN_IF_ERROR(ValidateName(header.name(), "header.name"));
  if (header.dim() < 1 || header.dim() > 65536) {
    return absl::InvalidArgumentError(
        absl::StrCat("header.dim: ", header.dim(), " must lie in [1, 65536]"));
  }
  if (header.num_samples() < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("header.num_samples: ", header.num_samples(), " must be >= 1"));
  }
  // Divided, not multiplied: a hostile num_samples cannot overflow the size.
  if (header.num_samples() > max_dataset_bytes / (4 * header.dim())) {
    return absl::ResourceExhaustedError(
        absl::StrCat("header: ", header.num_samples(), " samples of ", header.dim(),
                     " floats exceed the server's dataset limit of ", max_dataset_bytes, " bytes"));
  }
  return DatasetAssembler(header, tensor_limits);
}

DatasetAssembler::DatasetAssembler(const v1::DatasetHeader& header,
                                   const TensorLimits& tensor_limits)
    : num_samples_(header.num_samples()),
      dim_(header.dim()),
      tensor_limits_(tensor_limits),
      samples_(at::empty({header.num_samples(), header.dim()}, at::kFloat)) {}

absl::Status DatasetAssembler::Add(const v1::UploadDatasetRequest& message) {
  if (!message.has_chunk()) {
    return absl::InvalidArgumentError(
        absl::StrCat("upload: message ", chunk_count_ + 1, " must be a chunk"));
  }
  INVNET_ASSIGN_OR_RETURN(
      at::Tensor chunk,
      DecodeBatch(message.chunk(), dim_, absl::StrCat("chunk ", chunk_count_), tensor_limits_));
  if (chunk.size(0) > num_samples_ - filled_) {
    return absl::InvalidArgumentError(absl::StrCat(
        "chunk ", chunk_count_, ": more samples than header.num_samples = ", num_samples_));
  }
  samples_.narrow(0, filled_, chunk.size(0)).copy_(chunk);
  filled_ += chunk.size(0);
  ++chunk_count_;
  return absl::OkStatus();
}

absl::StatusOr<at::Tensor> DatasetAssembler::Finish() const {
  if (filled_ != num_samples_) {
    return absl::InvalidArgumentError(absl::StrCat(
        "upload: received ", filled_, " samples, header.num_samples says ", num_samples_));
  }
  return samples_;
}

}  // namespace invnet::server
