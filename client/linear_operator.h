#ifndef INVNET_CLIENT_LINEAR_OPERATOR_H_
#define INVNET_CLIENT_LINEAR_OPERATOR_H_

// The forward operator A of a problem (invnet.v1.Operator) on the client, without LibTorch: for
// checking a network's forward map against A x (or A^T A x) in reports. The definitions are
// those of models/operators.h and problem.proto:
//   identity     A = I_n
//   dense        A = matrix, [m, n]
//   convolution  (A x)_i = sum_j kernel_j x_{i + j - c}, c = (len(kernel) - 1) / 2, m = n, with
//                x_k read as x_{k mod n} (periodic, the default) or 0 outside [0, n) (zero)
// Sums are accumulated in double precision and rounded to float once.
//
// A ClientOperator is immutable after Create and safe to share between threads.

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "client/dense_tensor.h"
#include "invnet/v1/problem.pb.h"

namespace invnet::client {

class ClientOperator {
 public:
  // INVALID_ARGUMENT naming the field for an operator the server would refuse: no kind, a
  // matrix that is not [m >= 1, n >= 1] with m * n finite values, a dimension below 1, a kernel
  // that is empty, longer than n or not finite.
  static absl::StatusOr<ClientOperator> Create(const v1::Operator& proto);

  int64_t input_dim() const { return n_; }   // n
  int64_t output_dim() const { return m_; }  // m

  // A x for x [batch, n] -> [batch, m]; INVALID_ARGUMENT when x is not such a matrix.
  absl::StatusOr<DenseTensor> Apply(const DenseTensor& x) const;
  // A^T y for y [batch, m] -> [batch, n]; INVALID_ARGUMENT when y is not such a matrix.
  absl::StatusOr<DenseTensor> Adjoint(const DenseTensor& y) const;
  // A^T A x.
  absl::StatusOr<DenseTensor> Normal(const DenseTensor& x) const;

 private:
  enum class Kind { kIdentity, kDense, kConvolution };
  ClientOperator() = default;
  // out = A in (adjoint: A^T in) for one sample.
  void ApplyRow(const float* in, bool adjoint, float* out) const;

  Kind kind_ = Kind::kIdentity;
  int64_t m_ = 0;
  int64_t n_ = 0;
  std::vector<double> matrix_;  // dense: [m, n] row-major
  std::vector<double> kernel_;  // convolution taps
  bool periodic_ = true;
};

}  // namespace invnet::client

#endif  // INVNET_CLIENT_LINEAR_OPERATOR_H_
