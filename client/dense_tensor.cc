#include "client/dense_tensor.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace invnet::client {

DenseTensor DenseTensor::Matrix(int64_t rows, int64_t cols) {
  DenseTensor tensor;
  tensor.shape = {rows, cols};
  tensor.values.assign(static_cast<size_t>(rows * cols), 0.0f);
  return tensor;
}

absl::StatusOr<int64_t> NumElements(const std::vector<int64_t>& shape, absl::string_view field) {
  int64_t count = 1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ": shape[", i, "] = ", shape[i], " is negative"));
    }
    // A hostile shape such as [2^40, 2^40] must not wrap around to a small count.
    if (__builtin_mul_overflow(count, shape[i], &count)) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ": shape ", ShapeToString(shape), " has too many elements"));
    }
  }
  return count;
}

DenseTensor RowRange(const DenseTensor& m, int64_t begin, int64_t count) {
  DenseTensor out = DenseTensor::Matrix(count, m.cols());
  std::copy(m.values.begin() + begin * m.cols(), m.values.begin() + (begin + count) * m.cols(),
            out.values.begin());
  return out;
}

void AppendRows(const DenseTensor& part, DenseTensor* all) {
  if (all->shape.empty()) {
    *all = part;
    return;
  }
  all->shape[0] += part.rows();
  all->values.insert(all->values.end(), part.values.begin(), part.values.end());
}

std::string ShapeToString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

absl::Status DenseTensor::Validate(absl::string_view field) const {
  absl::StatusOr<int64_t> count = NumElements(shape, field);
  if (!count.ok()) return count.status();
  if (static_cast<uint64_t>(*count) != values.size()) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": shape ", ShapeToString(shape),
                                                   " needs ", *count, " values, got ",
                                                   values.size()));
  }
  for (size_t i = 0; i < values.size(); ++i) {
    if (!std::isfinite(values[i])) {
      // Counted from 1, as CSV line numbers and spreadsheets count.
      std::string where = absl::StrCat("value ", i + 1);
      if (is_matrix() && shape[1] > 0) {
        where = absl::StrCat("row ", i / static_cast<size_t>(shape[1]) + 1, ", column ",
                             i % static_cast<size_t>(shape[1]) + 1);
      }
      return absl::InvalidArgumentError(absl::StrCat(field, ": ", where, " is not finite (",
                                                     std::isnan(values[i]) ? "NaN" : "Inf", ")"));
    }
  }
  return absl::OkStatus();
}

absl::Status DenseTensor::ValidateMatrix(absl::string_view field) const {
  if (!is_matrix()) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ": expected a rank-2 tensor [batch, dim], got shape ", ShapeToString(shape)));
  }
  return Validate(field);
}

void DenseTensor::ToProto(v1::Tensor* proto) const {
  proto->mutable_shape()->Assign(shape.begin(), shape.end());
  proto->mutable_values()->Assign(values.begin(), values.end());
}

v1::Tensor DenseTensor::ToProto() const {
  v1::Tensor proto;
  ToProto(&proto);
  return proto;
}

absl::StatusOr<DenseTensor> DenseTensor::FromProtoAllowingNaN(const v1::Tensor& proto,
                                                              absl::string_view field) {
  // Validate a copy whose NaNs are zeros, so the shape and Inf checks stay in one place.
  DenseTensor tensor;
  tensor.shape.assign(proto.shape().begin(), proto.shape().end());
  tensor.values.assign(proto.values().begin(), proto.values().end());
  DenseTensor checked = tensor;
  for (float& v : checked.values) {
    if (std::isnan(v)) v = 0.0f;
  }
  absl::Status status = checked.Validate(field);
  if (!status.ok()) return status;
  return tensor;
}

absl::StatusOr<DenseTensor> DenseTensor::FromProto(const v1::Tensor& proto,
                                                   absl::string_view field) {
  DenseTensor tensor;
  tensor.shape.assign(proto.shape().begin(), proto.shape().end());
  tensor.values.assign(proto.values().begin(), proto.values().end());
  absl::Status status = tensor.Validate(field);
  if (!status.ok()) return status;
  return tensor;
}

}  // namespace invnet::client
