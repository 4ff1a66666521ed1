#ifndef INVNET_MODELS_OPERATORS_H_
#define INVNET_MODELS_OPERATORS_H_

// Linear forward operators A : R^n -> R^m of the inverse problem y = A x + noise.
//
// An OperatorSpec is the plain, serialisable description (what checkpoints and the RPC contract
// carry); LinearOperator::Create validates it and builds the operator. All maps act on batches
// [batch, n] (or [batch, m]) of float32 or float64, are differentiable LibTorch expressions and
// keep the input's dtype. A LinearOperator is immutable and safe to share between threads.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace invnet {

enum class OperatorKind {
  kIdentity,     // A = I_n
  kDense,        // A given as an m x n matrix
  kConvolution,  // (A x)_i = sum_j kernel_j x_{i + j - c}, c = (len - 1) / 2; m = n
};

enum class Boundary {
  kPeriodic,  // indices wrap around (circular convolution)
  kZero,      // values outside [0, n) are zero
};

struct OperatorSpec {
  OperatorKind kind = OperatorKind::kIdentity;
  int64_t dim = 0;                 // n for kIdentity and kConvolution (ignored for kDense)
  at::Tensor matrix;               // kDense: [m, n], any float dtype (stored as float64)
  std::vector<double> kernel;      // kConvolution: taps, length 1 .. n
  Boundary boundary = Boundary::kPeriodic;  // kConvolution
};

absl::string_view OperatorKindName(OperatorKind kind);  // "identity", "dense", "convolution"
absl::StatusOr<OperatorKind> ParseOperatorKind(absl::string_view name);
absl::string_view BoundaryName(Boundary boundary);  // "periodic", "zero"
absl::StatusOr<Boundary> ParseBoundary(absl::string_view name);

// A Gaussian blur kernel of standard deviation `sigma` samples with `num_taps` taps at offsets
// j = -c .. num_taps - 1 - c (c = (num_taps - 1) / 2), normalised to sum 1. With num_taps = n and
// periodic boundaries it is the exact periodic Gaussian blur (the blur64 preset: sigma 2, n 64).
std::vector<double> GaussianBlurKernel(double sigma, int64_t num_taps);

class LinearOperator {
 public:
  // INVALID_ARGUMENT (naming the field) for a bad spec: non-finite values, empty or oversized
  // matrix, kernel longer than n, n outside [1, 65536].
  static absl::StatusOr<std::unique_ptr<LinearOperator>> Create(const OperatorSpec& spec);
  virtual ~LinearOperator() = default;

  const OperatorSpec& spec() const { return spec_; }
  int64_t input_dim() const { return input_dim_; }    // n
  int64_t output_dim() const { return output_dim_; }  // m

  // A x for x [batch, n] -> [batch, m].
  virtual at::Tensor Apply(const at::Tensor& x) const = 0;
  // A^T y for y [batch, m] -> [batch, n].
  virtual at::Tensor Adjoint(const at::Tensor& y) const = 0;
  // A^T A x.
  at::Tensor Normal(const at::Tensor& x) const { return Adjoint(Apply(x)); }
  // A as an explicit [m, n] float64 matrix (for the exact reference estimators).
  at::Tensor Matrix() const;
  // ||A||_2: exact (SVD) when m * n <= 2^22, otherwise 200 power iterations on A^T A.
  double NormEstimate() const;

  // Checked forms for user input: INVALID_ARGUMENT naming `field` for a bad batch.
  absl::StatusOr<at::Tensor> ApplyChecked(const at::Tensor& x, absl::string_view field) const;
  absl::StatusOr<at::Tensor> AdjointChecked(const at::Tensor& y, absl::string_view field) const;

 protected:
  LinearOperator(OperatorSpec spec, int64_t input_dim, int64_t output_dim)
      : spec_(std::move(spec)), input_dim_(input_dim), output_dim_(output_dim) {}

 private:
  OperatorSpec spec_;
  int64_t input_dim_;
  int64_t output_dim_;
};

}  // namespace invnet

#endif  // INVNET_MODELS_OPERATORS_H_
