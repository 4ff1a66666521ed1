#include "models/problem.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <tuple>

#include <ATen/ATen.h>

#include "absl/strings/str_cat.h"
#include "proto/base/status_macros.h"

namespace invnet {

absl::string_view LossKindName(LossKind kind) {
  switch (kind) {
    case LossKind::kApproximation:
      return "approximation";
    case LossKind::kReconstruction:
      return "reconstruction";
    case LossKind::kLogDet:
      return "logdet";
    case LossKind::kDivergence:
      return "divergence";
  }
  return "unknown";
}

absl::StatusOr<LossKind> ParseLossKind(absl::string_view name) {
  for (LossKind k : {LossKind::kApproximation, LossKind::kReconstruction, LossKind::kLogDet,
                     LossKind::kDivergence}) {
    if (name == LossKindName(k)) return k;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "loss: unknown '", name, "' (expected approximation, reconstruction, logdet or divergence)"));
}

absl::string_view TargetSpaceName(TargetSpace space) {
  return space == TargetSpace::kMeasurement ? "measurement" : "normal";
}

absl::StatusOr<TargetSpace> ParseTargetSpace(absl::string_view name) {
  if (name == "measurement") return TargetSpace::kMeasurement;
  if (name == "normal") return TargetSpace::kNormal;
  return absl::InvalidArgumentError(
      absl::StrCat("target_space: unknown '", name, "' (expected measurement or normal)"));
}

absl::string_view LogDetEstimatorName(LogDetEstimator estimator) {
  return estimator == LogDetEstimator::kRussianRoulette ? "russian_roulette" : "truncated_series";
}

absl::StatusOr<LogDetEstimator> ParseLogDetEstimator(absl::string_view name) {
  for (LogDetEstimator e : {LogDetEstimator::kRussianRoulette, LogDetEstimator::kTruncatedSeries}) {
    if (name == LogDetEstimatorName(e)) return e;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "log_det_estimator: unknown '", name, "' (expected russian_roulette or truncated_series)"));
}

namespace {

// A = I exactly: the identity operator, an identity matrix, or the one-tap kernel {1}.
bool IsIdentityOperator(const OperatorSpec& op) {
  switch (op.kind) {
    case OperatorKind::kIdentity:
      return true;
    case OperatorKind::kDense: {
      const at::Tensor& a = op.matrix;
      return a.defined() && a.dim() == 2 && a.size(0) == a.size(1) &&
             at::equal(a.to(at::kDouble), at::eye(a.size(0), at::kDouble));
    }
    case OperatorKind::kConvolution:
      return op.kernel.size() == 1 && op.kernel[0] == 1.0;
  }
  return false;
}

// Above this n a convolution's determinant is not checked (its matrix costs n^2, its LU n^3).
constexpr int64_t kMaxOrientationCheckDim = 512;

// det A < 0 for a square operator (dense, or a convolution up to kMaxOrientationCheckDim,
// through its matrix); false for a non-square one, which has no determinant, or an invalid spec.
bool ReversesOrientation(const OperatorSpec& op) {
  if (op.kind == OperatorKind::kIdentity) return false;
  at::Tensor matrix;
  if (op.kind == OperatorKind::kDense) {
    matrix = op.matrix;
  } else {
    if (op.dim > kMaxOrientationCheckDim) return false;
    absl::StatusOr<std::unique_ptr<LinearOperator>> built = LinearOperator::Create(op);
    if (!built.ok()) return false;
    matrix = (*built)->Matrix();
  }
  if (!matrix.defined() || matrix.dim() != 2 || matrix.size(0) != matrix.size(1)) return false;
  return std::get<0>(at::linalg_slogdet(matrix.to(at::kDouble))).item<double>() < 0;
}

}  // namespace

std::vector<std::string> TrainingWarnings(const ProblemSpec& problem, const TrainingSpec& training) {
  std::vector<std::string> warnings;
  if (training.loss == LossKind::kLogDet && training.target_space == TargetSpace::kNormal) {
    warnings.push_back(
        "log-det loss in normal space: unsupported by the theory (Tweedie's identity, which makes "
        "phi^-1 posterior-mean-like, holds in measurement space, t = y); trained anyway");
  }
  if (training.loss == LossKind::kDivergence &&
      training.target_space == TargetSpace::kMeasurement && !IsIdentityOperator(problem.op)) {
    warnings.push_back(
        "divergence loss in measurement space with A != I: unsupported by the theory (phi^-1 "
        "solves the MAP condition only in normal space, t = A^T y); trained anyway");
  }
  if (training.target_space == TargetSpace::kMeasurement && ReversesOrientation(problem.op)) {
    warnings.push_back(
        "det A < 0 in measurement space: an iResNet preserves orientation (det J_phi > 0), so "
        "phi cannot approximate this A; train in normal space (A^T A has det > 0), or negate one "
        "row of A and the same entry of every y; trained anyway");
  }
  return warnings;
}

std::string FormatExact(double value) {
  char buffer[32];
  if (std::abs(value) < 1e16 && value == std::trunc(value)) {  // integers in full: 10000001
    std::snprintf(buffer, sizeof(buffer), "%.0f", value);
    return buffer;
  }
  for (int digits = 6; digits <= 17; ++digits) {
    std::snprintf(buffer, sizeof(buffer), "%.*g", digits, value);
    if (std::strtod(buffer, nullptr) == value || !std::isfinite(value)) break;
  }
  return buffer;
}

namespace {

// The largest |entry| of `t` (0 for an empty or undefined tensor; NaN passes through).
double MaxAbs(const at::Tensor& t) {
  if (!t.defined() || t.numel() == 0) return 0.0;
  return t.abs().max().item<double>();
}

absl::Status CheckMaxAbs(const at::Tensor& t, absl::string_view field) {
  const double max_abs = MaxAbs(t);
  if (max_abs <= kMaxProblemValue) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(field, ": an entry of magnitude ",
                                                 FormatExact(max_abs), " exceeds the limit ",
                                                 FormatExact(kMaxProblemValue)));
}

absl::Status CheckScalar(double value, absl::string_view field) {
  if (std::abs(value) <= kMaxProblemValue || std::isnan(value)) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", FormatExact(value),
                                                 " exceeds the limit ",
                                                 FormatExact(kMaxProblemValue)));
}

// ||A||_F >= ||A||_2: cheap for any size.
double OperatorNormBound(const OperatorSpec& op) {
  switch (op.kind) {
    case OperatorKind::kIdentity:
      return 1.0;
    case OperatorKind::kDense:
      return op.matrix.defined() ? op.matrix.to(at::kDouble).norm().item<double>() : 0.0;
    case OperatorKind::kConvolution: {
      double sum = 0.0;  // ||A||_2 <= sum |k_j| for a convolution
      for (double k : op.kernel) sum += std::abs(k);
      return sum;
    }
  }
  return 0.0;
}

}  // namespace

absl::Status ValidateProblemMagnitudes(const ProblemSpec& problem, const TrainingSpec& training,
                                       const at::Tensor& dataset_samples) {
  at::NoGradGuard no_grad;
  if (problem.op.kind == OperatorKind::kDense) {
    INVNET_RETURN_IF_ERROR(CheckMaxAbs(problem.op.matrix, "operator.dense.matrix"));
  }
  if (problem.op.kind == OperatorKind::kConvolution) {
    INVNET_RETURN_IF_ERROR(CheckMaxAbs(
        at::tensor(std::vector<double>(problem.op.kernel), at::kDouble),
        "operator.convolution.kernel"));
  }
  INVNET_RETURN_IF_ERROR(CheckScalar(problem.noise_level, "problem.noise_level"));
  if (training.loss_weight >= 0) {  // negative: delta^2, bounded through noise_level
    INVNET_RETURN_IF_ERROR(CheckScalar(training.loss_weight, "training.loss_weight"));
  }
  double signal_scale = 0.0;
  if (problem.prior.has_value()) {
    const GaussianMixtureSpec& prior = *problem.prior;
    INVNET_RETURN_IF_ERROR(CheckMaxAbs(prior.means, "prior.means"));
    INVNET_RETURN_IF_ERROR(CheckMaxAbs(prior.covariances, "prior.covariances"));
    if (prior.covariances.defined() && prior.covariances.dim() == 3 &&
        prior.covariances.size(1) == prior.covariances.size(2)) {
      // Six standard deviations of the widest variance beyond the largest mean.
      at::Tensor variances = prior.covariances.to(at::kDouble).diagonal(0, 1, 2);
      signal_scale = MaxAbs(prior.means) + 6.0 * std::sqrt(std::max(0.0, MaxAbs(variances)));
      for (int64_t k = 0; k < prior.covariances.size(0); ++k) {
        // The pivots of a Cholesky factorisation bound the condition number from below:
        // cond(S) >= (max_i L_ii / min_i L_ii)^2. Not positive definite: left to
        // GaussianMixture::Create, which names it.
        auto [factor, info] = at::linalg_cholesky_ex(prior.covariances[k].to(at::kDouble));
        if (info.item<int64_t>() != 0) continue;
        at::Tensor pivots = factor.diagonal();
        const double ratio = (pivots.max() / pivots.min()).item<double>();
        if (ratio * ratio > kMaxCovarianceCondition) {
          return absl::InvalidArgumentError(absl::StrCat(
              "prior.covariances[", k, "]: condition number at least ",
              FormatExact(ratio * ratio), " exceeds the limit ",
              FormatExact(kMaxCovarianceCondition),
              " (its variances span too many orders of magnitude)"));
        }
      }
    }
  }
  if (dataset_samples.defined()) {
    INVNET_RETURN_IF_ERROR(CheckMaxAbs(dataset_samples, "problem.dataset (samples)"));
    signal_scale = MaxAbs(dataset_samples);
  }
  const double dim = static_cast<double>(
      problem.op.kind == OperatorKind::kDense && problem.op.matrix.defined() &&
              problem.op.matrix.dim() == 2
          ? problem.op.matrix.size(1)
          : problem.op.dim);
  // A signal of n entries of magnitude signal_scale has norm <= sqrt(n) signal_scale.
  const double scale = OperatorNormBound(problem.op) * std::sqrt(std::max(1.0, dim)) *
                           signal_scale + 6.0 * problem.noise_level;
  if (!(scale <= kMaxMeasurementScale)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "problem: measurements of magnitude up to ", FormatExact(scale),
        " (operator norm x signal magnitude) exceed the limit ",
        FormatExact(kMaxMeasurementScale), "; rescale the operator or the signals"));
  }
  return absl::OkStatus();
}

}  // namespace invnet
