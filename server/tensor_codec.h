#ifndef INVNET_SERVER_TENSOR_CODEC_H_
#define INVNET_SERVER_TENSOR_CODEC_H_

// invnet.v1.Tensor <-> at::Tensor. Decoding trusts nothing: a tensor from the wire is checked
// for rank, non-negative shape entries, an element count that cannot overflow, values_size equal
// to the product of the shape (so data of one request can never be read as another's shape), a
// size limit and finite values, before any LibTorch code sees it.

#include <cstdint>

#include <ATen/core/Tensor.h>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "invnet/v1/tensor.pb.h"

namespace invnet::server {

struct TensorLimits {
  int64_t max_elements = int64_t{1} << 28;
  // Rows of one batch (invnet-server --max_batch).
  int64_t max_batch = 1000000;
};

// A float32 tensor of rank `rank` (any rank when rank < 0). INVALID_ARGUMENT naming `field`
// ("measurements: ...") for a malformed tensor; RESOURCE_EXHAUSTED above the element limit.
absl::StatusOr<at::Tensor> DecodeTensor(const v1::Tensor& proto, int rank,
                                        absl::string_view field,
                                        const TensorLimits& limits = TensorLimits());

// A batch [b, dim] with 1 <= b <= limits.max_batch (RESOURCE_EXHAUSTED above it) and the given
// dim, as the RPCs take it.
absl::StatusOr<at::Tensor> DecodeBatch(const v1::Tensor& proto, int64_t dim,
                                       absl::string_view field,
                                       const TensorLimits& limits = TensorLimits());

// Any float tensor (converted to float32) into `proto`.
void EncodeTensor(const at::Tensor& tensor, v1::Tensor* proto);

}  // namespace invnet::server

#endif  // INVNET_SERVER_TENSOR_CODEC_H_
