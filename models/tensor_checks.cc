#include "models/tensor_checks.h"

#include <ATen/ATen.h>

#include "absl/strings/str_cat.h"

namespace invnet {

absl::Status CheckFinite(const at::Tensor& tensor, absl::string_view field) {
  if (!tensor.defined()) return absl::InvalidArgumentError(absl::StrCat(field, ": missing"));
  if (!at::isFloatingType(tensor.scalar_type()) || tensor.numel() == 0) return absl::OkStatus();
  at::Tensor bad = at::logical_not(at::isfinite(tensor));
  if (!bad.any().item<bool>()) return absl::OkStatus();
  int64_t first = bad.reshape({-1}).nonzero()[0][0].item<int64_t>();
  return absl::InvalidArgumentError(
      absl::StrCat(field, ": holds NaN or Inf (first at flat index ", first, ")"));
}

absl::Status CheckBatch(const at::Tensor& batch, int64_t dim, absl::string_view field) {
  if (!batch.defined()) return absl::InvalidArgumentError(absl::StrCat(field, ": missing"));
  if (batch.scalar_type() != at::kFloat && batch.scalar_type() != at::kDouble) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": must be float32 or float64"));
  }
  if (batch.dim() != 2) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": must have rank 2 [batch, ", dim, "], got rank ", batch.dim()));
  }
  if (batch.size(0) < 1) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": empty batch"));
  }
  if (batch.size(1) != dim) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": expected ", dim,
                                                   " values per sample, got ", batch.size(1)));
  }
  at::Tensor bad_rows = at::logical_not(at::isfinite(batch)).any(1);
  if (bad_rows.any().item<bool>()) {
    int64_t first = bad_rows.nonzero()[0][0].item<int64_t>();
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": sample ", first, " holds NaN or Inf"));
  }
  return absl::OkStatus();
}

}  // namespace invnet
