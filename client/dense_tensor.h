#ifndef INVNET_CLIENT_DENSE_TENSOR_H_
#define INVNET_CLIENT_DENSE_TENSOR_H_

// DenseTensor: the client's plain, torch-free tensor, the in-memory twin of invnet.v1.Tensor.
//
// A value type (copyable, movable); no internal synchronisation, so share a const instance
// freely across threads but guard a mutated one yourself.

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "invnet/v1/tensor.pb.h"

namespace invnet::client {

struct DenseTensor {
  // Dimensions; a batch is the first one ([batch, n] for signals, [batch, m] for measurements).
  std::vector<int64_t> shape;
  // prod(shape) values in row-major (C) order.
  std::vector<float> values;

  // A [rows, cols] tensor of zeros. Precondition: rows >= 0, cols >= 0.
  static DenseTensor Matrix(int64_t rows, int64_t cols);

  int64_t rank() const { return static_cast<int64_t>(shape.size()); }
  bool is_matrix() const { return shape.size() == 2; }
  // shape[0] / shape[1] of a rank-2 tensor; 0 for any other rank (check is_matrix() or
  // ValidateMatrix() first when the difference matters).
  int64_t rows() const { return is_matrix() ? shape[0] : 0; }
  int64_t cols() const { return is_matrix() ? shape[1] : 0; }
  // Element (r, c) of a rank-2 tensor. Precondition: is_matrix(), 0 <= r < rows(), 0 <= c < cols().
  float at(int64_t r, int64_t c) const { return values[static_cast<size_t>(r * shape[1] + c)]; }
  float& at(int64_t r, int64_t c) { return values[static_cast<size_t>(r * shape[1] + c)]; }

  // OK when every shape entry is >= 0, prod(shape) does not overflow int64 and equals
  // values.size(), and every value is finite. Otherwise INVALID_ARGUMENT whose message starts
  // with `field` (e.g. "measurements: shape[1] = -2 is negative", "y: row 2, column 1 is not
  // finite (NaN)", rows and columns counted from 1), so the caller can tell which input was bad.
  absl::Status Validate(absl::string_view field) const;
  // Validate() plus rank == 2 (INVALID_ARGUMENT naming `field` otherwise).
  absl::Status ValidateMatrix(absl::string_view field) const;

  // Copies into `proto` (replacing its contents). Does not validate.
  void ToProto(v1::Tensor* proto) const;
  v1::Tensor ToProto() const;
  // Copies `proto` and validates it with Validate(field): INVALID_ARGUMENT naming `field` when
  // the shape is negative, overflows or disagrees with the value count, or a value is NaN/Inf.
  static absl::StatusOr<DenseTensor> FromProto(const v1::Tensor& proto, absl::string_view field);
  // The same, but NaN values pass (a server's answer may mark undefined entries NaN, e.g.
  // ReconstructResponse.posterior_std); Inf is still refused.
  static absl::StatusOr<DenseTensor> FromProtoAllowingNaN(const v1::Tensor& proto,
                                                          absl::string_view field);
};

// Rows [begin, begin + count) of a matrix, as a [count, cols] matrix. Precondition:
// m.is_matrix(), 0 <= begin, count >= 0, begin + count <= m.rows().
DenseTensor RowRange(const DenseTensor& m, int64_t begin, int64_t count);
// Appends the rows of `part` to `all` (an empty tensor {} takes part's shape). Precondition:
// both are matrices with the same number of columns, or `all` is empty.
void AppendRows(const DenseTensor& part, DenseTensor* all);

// prod(shape), or INVALID_ARGUMENT naming `field` when an entry is negative or the product
// overflows int64.
absl::StatusOr<int64_t> NumElements(const std::vector<int64_t>& shape, absl::string_view field);

// "[2, 3]": a shape as it appears in messages.
std::string ShapeToString(const std::vector<int64_t>& shape);

}  // namespace invnet::client

#endif  // INVNET_CLIENT_DENSE_TENSOR_H_
