#ifndef INVNET_MODELS_TENSOR_CHECKS_H_
#define INVNET_MODELS_TENSOR_CHECKS_H_

// Validation of user-supplied batches, shared by every API that takes one.

#include <cstdint>

#include <ATen/core/Tensor.h>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace invnet {

// OK when `batch` is a defined float32/float64 tensor of shape [b, dim] with b >= 1 and only
// finite values; otherwise INVALID_ARGUMENT whose message starts with `field` and says why
// (e.g. "y: sample 3 holds NaN or Inf").
absl::Status CheckBatch(const at::Tensor& batch, int64_t dim, absl::string_view field);

// OK when every value is finite; otherwise INVALID_ARGUMENT naming `field`.
absl::Status CheckFinite(const at::Tensor& tensor, absl::string_view field);

}  // namespace invnet

#endif  // INVNET_MODELS_TENSOR_CHECKS_H_
