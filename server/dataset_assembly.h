#ifndef INVNET_SERVER_DATASET_ASSEMBLY_H_
#define INVNET_SERVER_DATASET_ASSEMBLY_H_

// The pure part of an UploadDataset stream, without gRPC or disk: validates the header, then
// copies chunk after chunk into one [num_samples, dim] float32 tensor, enforcing the limits. The
// RPC handler only reads messages and stores the result; the fuzz target drives this directly.
//
// Thread safety: none; one assembler belongs to one upload.

#include <ATen/core/Tensor.h>

#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "invnet/v1/dataset_service.pb.h"
#include "server/tensor_codec.h"

namespace invnet::server {

class DatasetAssembler {
 public:
  // INVALID_ARGUMENT naming the field: bad name, dim outside [1, 65536], num_samples < 1.
  // RESOURCE_EXHAUSTED when num_samples * dim float32 values exceed `max_dataset_bytes`.
  static absl::StatusOr<DatasetAssembler> Create(const v1::DatasetHeader& header,
                                                 int64_t max_dataset_bytes,
                                                 const TensorLimits& tensor_limits);

  // The message after the header (or the previous chunk): INVALID_ARGUMENT when it is not a
  // chunk, is not a valid [k, dim] batch (see DecodeBatch) or would exceed num_samples;
  // RESOURCE_EXHAUSTED above the tensor limits.
  absl::Status Add(const v1::UploadDatasetRequest& message);

  // The samples [num_samples, dim]; INVALID_ARGUMENT when fewer than num_samples arrived.
  absl::StatusOr<at::Tensor> Finish() const;

 private:
  DatasetAssembler(const v1::DatasetHeader& header, const TensorLimits& tensor_limits);

  int64_t num_samples_;
  int64_t dim_;
  TensorLimits tensor_limits_;
  at::Tensor samples_;  // [num_samples, dim]; rows [0, filled_) hold received samples
  int64_t filled_ = 0;
  int64_t chunk_count_ = 0;
};

}  // namespace invnet::server

#endif  // INVNET_SERVER_DATASET_ASSEMBLY_H_
