#include "server/tensor_codec.h"

#include <cmath>
#include <cstring>
#include <vector>

#include <ATen/ATen.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace invnet::server {

absl::StatusOr<at::Tensor> DecodeTensor(const v1::Tensor& proto, int rank,
                                        absl::string_view field, const TensorLimits& limits) {
  if (rank >= 0 && proto.shape_size() != rank) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": must have rank ", rank, ", got ",
                                                   proto.shape_size(), " (shape [",
                                                   absl::StrJoin(proto.shape(), ", "), "])"));
  }
  std::vector<int64_t> shape(proto.shape().begin(), proto.shape().end());
  int64_t count = 1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ": shape[", i, "] = ", shape[i], " is negative"));
    }
    // Checked before multiplying, so a hostile shape cannot overflow the count.
    if (shape[i] > 0 && count > limits.max_elements / shape[i]) {
      return absl::ResourceExhaustedError(absl::StrCat(
          field, ": shape [", absl::StrJoin(shape, ", "), "] exceeds the limit of ",
          limits.max_elements, " values"));
    }
    count *= shape[i];
  }
  if (proto.values_size() != count) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": values_size ", proto.values_size(),
                                                   " != product of shape [",
                                                   absl::StrJoin(shape, ", "), "] = ", count));
  }
  for (int64_t i = 0; i < count; ++i) {
    if (!std::isfinite(proto.values(static_cast<int>(i)))) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ": value ", i, " is NaN or Inf"));
    }
  }
  at::Tensor tensor = at::empty(shape, at::kFloat);
  if (count > 0) std::memcpy(tensor.data_ptr<float>(), proto.values().data(), count * sizeof(float));
  return tensor;
}

absl::StatusOr<at::Tensor> DecodeBatch(const v1::Tensor& proto, int64_t dim,
                                       absl::string_view field, const TensorLimits& limits) {
  absl::StatusOr<at::Tensor> tensor = DecodeTensor(proto, 2, field, limits);
  if (!tensor.ok()) return tensor;
  if (tensor->size(0) < 1) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": empty batch (shape[0] = 0)"));
  }
  if (tensor->size(0) > limits.max_batch) {
    return absl::ResourceExhaustedError(absl::StrCat(field, ": a batch of ", tensor->size(0),
                                                     " rows exceeds the server's limit of ",
                                                     limits.max_batch, " (--max_batch)"));
  }
  if (tensor->size(1) != dim) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": expected ", dim,
                                                   " values per sample (shape[1]), got ",
                                                   tensor->size(1)));
  }
  return tensor;
}

void EncodeTensor(const at::Tensor& tensor, v1::Tensor* proto) {
  at::Tensor t = tensor.detach().to(at::kFloat).contiguous();
  proto->clear_shape();
  for (int64_t d : t.sizes()) proto->add_shape(d);
  proto->mutable_values()->Resize(static_cast<int>(t.numel()), 0.0f);
  if (t.numel() > 0) {
    std::memcpy(proto->mutable_values()->mutable_data(), t.data_ptr<float>(),
                t.numel() * sizeof(float));
  }
}

}  // namespace invnet::server
