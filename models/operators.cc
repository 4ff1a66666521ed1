#include "models/operators.h"

#include <cmath>

#include <ATen/ATen.h>

#include "absl/strings/str_cat.h"
#include "models/tensor_checks.h"
#include "models/torch_status.h"

namespace invnet {
namespace {

constexpr int64_t kMaxOperatorDim = 65536;
constexpr int64_t kMaxDenseEntries = int64_t{1} << 26;
constexpr int64_t kExactNormMaxEntries = int64_t{1} << 22;

// A parameter tensor kept in both precisions, so an apply never converts.
struct DualTensor {
  at::Tensor f64;
  at::Tensor f32;
  explicit DualTensor(const at::Tensor& t) : f64(t.to(at::kDouble)), f32(t.to(at::kFloat)) {}
  const at::Tensor& For(const at::Tensor& x) const {
    return x.scalar_type() == at::kDouble ? f64 : f32;
  }
};

class IdentityOperator final : public LinearOperator {
 public:
  explicit IdentityOperator(const OperatorSpec& spec) : LinearOperator(spec, spec.dim, spec.dim) {}
  at::Tensor Apply(const at::Tensor& x) const override { return x; }
  at::Tensor Adjoint(const at::Tensor& y) const override { return y; }
};

class DenseOperator final : public LinearOperator {
 public:
  explicit DenseOperator(const OperatorSpec& spec)
      : LinearOperator(spec, spec.matrix.size(1), spec.matrix.size(0)),
        transposed_(spec.matrix.t().contiguous()),
        matrix_(spec.matrix.contiguous()) {}
  // x [batch, n] -> x A^T.
  at::Tensor Apply(const at::Tensor& x) const override {
    return at::matmul(x, transposed_.For(x));
  }
  at::Tensor Adjoint(const at::Tensor& y) const override { return at::matmul(y, matrix_.For(y)); }

 private:
  DualTensor transposed_;  // [n, m]
  DualTensor matrix_;      // [m, n]
};

class ConvolutionOperator final : public LinearOperator {
 public:
  explicit ConvolutionOperator(const OperatorSpec& spec)
      : LinearOperator(spec, spec.dim, spec.dim),
        kernel_(at::tensor(spec.kernel, at::kDouble).view({1, 1, -1})),
        flipped_(at::tensor(spec.kernel, at::kDouble).flip({0}).view({1, 1, -1})),
        center_((static_cast<int64_t>(spec.kernel.size()) - 1) / 2) {}

  // (A x)_i = sum_j k_j x_{i + j - c}: a cross-correlation with c values of padding on the left.
  at::Tensor Apply(const at::Tensor& x) const override {
    const int64_t len = static_cast<int64_t>(spec().kernel.size());
    return Correlate(x, kernel_.For(x), center_, len - 1 - center_);
  }
  // (A^T y)_i = sum_j k_j y_{i - j + c}: the flipped kernel with the padding mirrored.
  at::Tensor Adjoint(const at::Tensor& y) const override {
    const int64_t len = static_cast<int64_t>(spec().kernel.size());
    return Correlate(y, flipped_.For(y), len - 1 - center_, center_);
  }

 private:
  at::Tensor Correlate(const at::Tensor& x, const at::Tensor& kernel, int64_t left,
                       int64_t right) const {
    at::Tensor signal = x.unsqueeze(1);  // [batch, 1, n]
    const int64_t n = x.size(1);
    at::Tensor padded;
    if (spec().boundary == Boundary::kPeriodic) {
      // left, right <= n - 1 because the kernel is at most n long.
      padded = at::cat({signal.narrow(2, n - left, left), signal, signal.narrow(2, 0, right)}, 2);
    } else {
      padded = at::constant_pad_nd(signal, {left, right}, 0.0);
    }
    return at::conv1d(padded, kernel).squeeze(1);
  }

  DualTensor kernel_;
  DualTensor flipped_;
  int64_t center_;
};

absl::Status CheckDim(int64_t dim, absl::string_view field) {
  if (dim < 1 || dim > kMaxOperatorDim) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": ", dim, " is outside [1, ", kMaxOperatorDim, "]"));
  }
  return absl::OkStatus();
}

absl::Status ValidateSpec(const OperatorSpec& spec) {
  switch (spec.kind) {
    case OperatorKind::kIdentity:
      return CheckDim(spec.dim, "operator.dim");
    case OperatorKind::kDense: {
      const at::Tensor& a = spec.matrix;
      if (!a.defined() || a.dim() != 2) {
        return absl::InvalidArgumentError("operator.matrix: must be a rank-2 [m, n] matrix");
      }
      if (!at::isFloatingType(a.scalar_type())) {
        return absl::InvalidArgumentError("operator.matrix: must hold floating-point values");
      }
      absl::Status s = CheckDim(a.size(0), "operator.matrix rows (m)");
      if (s.ok()) s = CheckDim(a.size(1), "operator.matrix columns (n)");
      if (!s.ok()) return s;
      if (a.numel() > kMaxDenseEntries) {
        return absl::InvalidArgumentError(absl::StrCat("operator.matrix: ", a.numel(),
                                                       " entries exceed ", kMaxDenseEntries));
      }
      return CheckFinite(a, "operator.matrix");
    }
    case OperatorKind::kConvolution: {
      absl::Status s = CheckDim(spec.dim, "operator.dim");
      if (!s.ok()) return s;
      const int64_t len = static_cast<int64_t>(spec.kernel.size());
      if (len < 1 || len > spec.dim) {
        return absl::InvalidArgumentError(absl::StrCat(
            "operator.kernel: length ", len, " must lie in [1, operator.dim = ", spec.dim, "]"));
      }
      for (size_t i = 0; i < spec.kernel.size(); ++i) {
        if (!std::isfinite(spec.kernel[i])) {
          return absl::InvalidArgumentError(
              absl::StrCat("operator.kernel: tap ", i, " is NaN or Inf"));
        }
      }
      return absl::OkStatus();
    }
  }
  return absl::InvalidArgumentError("operator.kind: unknown");
}

}  // namespace

absl::string_view OperatorKindName(OperatorKind kind) {
  switch (kind) {
    case OperatorKind::kIdentity:
      return "identity";
    case OperatorKind::kDense:
      return "dense";
    case OperatorKind::kConvolution:
      return "convolution";
  }
  return "unknown";
}

absl::StatusOr<OperatorKind> ParseOperatorKind(absl::string_view name) {
  for (OperatorKind k :
       {OperatorKind::kIdentity, OperatorKind::kDense, OperatorKind::kConvolution}) {
    if (name == OperatorKindName(k)) return k;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "operator.kind: unknown '", name, "' (expected identity, dense or convolution)"));
}

absl::string_view BoundaryName(Boundary boundary) {
  return boundary == Boundary::kPeriodic ? "periodic" : "zero";
}

absl::StatusOr<Boundary> ParseBoundary(absl::string_view name) {
  if (name == "periodic") return Boundary::kPeriodic;
  if (name == "zero") return Boundary::kZero;
  return absl::InvalidArgumentError(
      absl::StrCat("operator.boundary: unknown '", name, "' (expected periodic or zero)"));
}

std::vector<double> GaussianBlurKernel(double sigma, int64_t num_taps) {
  const int64_t center = (num_taps - 1) / 2;
  std::vector<double> taps;
  double sum = 0.0;
  for (int64_t j = -center; j < num_taps - center; ++j) {
    taps.push_back(std::exp(-0.5 * (j * j) / (sigma * sigma)));
    sum += taps.back();
  }
  for (double& t : taps) t /= sum;
  return taps;
}

absl::StatusOr<std::unique_ptr<LinearOperator>> LinearOperator::Create(const OperatorSpec& spec) {
  absl::Status valid = ValidateSpec(spec);
  if (!valid.ok()) return valid;
  return GuardTorchOr<std::unique_ptr<LinearOperator>>(
      "LinearOperator::Create", [&]() -> absl::StatusOr<std::unique_ptr<LinearOperator>> {
        OperatorSpec copy = spec;
        switch (spec.kind) {
          case OperatorKind::kIdentity:
            return std::unique_ptr<LinearOperator>(new IdentityOperator(copy));
          case OperatorKind::kDense:
            copy.matrix = spec.matrix.to(at::kDouble).contiguous().clone();
            copy.dim = copy.matrix.size(1);
            return std::unique_ptr<LinearOperator>(new DenseOperator(copy));
          case OperatorKind::kConvolution:
            return std::unique_ptr<LinearOperator>(new ConvolutionOperator(copy));
        }
        return absl::InvalidArgumentError("operator.kind: unknown");
      });
}

at::Tensor LinearOperator::Matrix() const {
  at::NoGradGuard no_grad;
  at::Tensor identity = at::eye(input_dim(), at::kDouble);
  return Apply(identity).t().contiguous();  // row i of A(I) is A e_i, a column of A
}

double LinearOperator::NormEstimate() const {
  at::NoGradGuard no_grad;
  if (input_dim() * output_dim() <= kExactNormMaxEntries) {
    return at::linalg_svdvals(Matrix())[0].item<double>();
  }
  at::Tensor v = at::ones({1, input_dim()}, at::kDouble);
  v = v / v.norm();
  double norm_sq = 0.0;
  for (int it = 0; it < 200; ++it) {
    at::Tensor w = Normal(v);
    norm_sq = w.norm().item<double>();
    if (norm_sq == 0.0) return 0.0;
    v = w / norm_sq;
  }
  return std::sqrt(norm_sq);
}

absl::StatusOr<at::Tensor> LinearOperator::ApplyChecked(const at::Tensor& x,
                                                        absl::string_view field) const {
  absl::Status valid = CheckBatch(x, input_dim(), field);
  if (!valid.ok()) return valid;
  return GuardTorchOr<at::Tensor>("LinearOperator::Apply",
                                  [&]() -> absl::StatusOr<at::Tensor> { return Apply(x); });
}

absl::StatusOr<at::Tensor> LinearOperator::AdjointChecked(const at::Tensor& y,
                                                          absl::string_view field) const {
  absl::Status valid = CheckBatch(y, output_dim(), field);
  if (!valid.ok()) return valid;
  return GuardTorchOr<at::Tensor>("LinearOperator::Adjoint",
                                  [&]() -> absl::StatusOr<at::Tensor> { return Adjoint(y); });
}

}  // namespace invnet
