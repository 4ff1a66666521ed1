#include "models/priors.h"

#include <cmath>
#include <string>
#include <utility>

#include <ATen/ATen.h>

#include "absl/strings/str_cat.h"
#include "models/tensor_checks.h"
#include "models/torch_status.h"
#include "proto/base/status_macros.h"

namespace invnet {
namespace {

constexpr double kLog2Pi = 1.8378770664093454835606594728112;
constexpr double kWeightSumTolerance = 1e-6;
constexpr double kSymmetryTolerance = 1e-9;

// A defined floating-point tensor of rank `rank` with only finite values, as float64.
absl::StatusOr<at::Tensor> CheckedFloat64(const at::Tensor& t, int64_t rank,
                                          absl::string_view field, absl::string_view shape) {
  if (!t.defined()) return absl::InvalidArgumentError(absl::StrCat(field, ": missing"));
  if (!at::isFloatingType(t.scalar_type())) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": must be a floating-point tensor"));
  }
  if (t.dim() != rank) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": expected ", shape, ", got rank ", t.dim()));
  }
  INVNET_RETURN_IF_ERROR(CheckFinite(t, field));
  return t.to(at::kDouble).contiguous();
}

std::string ShapeString(const at::Tensor& t) {
  std::string out = "[";
  for (int64_t i = 0; i < t.dim(); ++i) absl::StrAppend(&out, i ? ", " : "", t.size(i));
  return out + "]";
}

absl::StatusOr<GaussianMixtureSpec> ValidatedSpec(const GaussianMixtureSpec& spec) {
  GaussianMixtureSpec out;
  INVNET_ASSIGN_OR_RETURN(out.weights, CheckedFloat64(spec.weights, 1, "prior.weights", "[K]"));
  INVNET_ASSIGN_OR_RETURN(out.means, CheckedFloat64(spec.means, 2, "prior.means", "[K, n]"));
  INVNET_ASSIGN_OR_RETURN(out.covariances,
                          CheckedFloat64(spec.covariances, 3, "prior.covariances", "[K, n, n]"));
  const int64_t k = out.weights.size(0);
  if (k < 1) return absl::InvalidArgumentError("prior.weights: need at least one component");
  const int64_t n = out.means.size(1);
  if (out.means.size(0) != k || n < 1) {
    return absl::InvalidArgumentError(absl::StrCat("prior.means: expected [K, n] with K = ", k,
                                                   " and n >= 1, got ", ShapeString(out.means)));
  }
  if (out.covariances.size(0) != k || out.covariances.size(1) != n ||
      out.covariances.size(2) != n) {
    return absl::InvalidArgumentError(absl::StrCat("prior.covariances: expected [K, n, n] = [", k,
                                                   ", ", n, ", ", n, "], got ",
                                                   ShapeString(out.covariances)));
  }
  auto weights = out.weights.accessor<double, 1>();
  double sum = 0.0;
  for (int64_t i = 0; i < k; ++i) {
    if (!(weights[i] > 0.0)) {
      return absl::InvalidArgumentError(
          absl::StrCat("prior.weights[", i, "]: must be positive (got ", weights[i], ")"));
    }
    sum += weights[i];
  }
  if (std::abs(sum - 1.0) > kWeightSumTolerance) {
    return absl::InvalidArgumentError(absl::StrCat("prior.weights: must sum to 1 (got ", sum, ")"));
  }
  // Within the tolerance the weights are taken as meant to sum to 1: renormalised, so the
  // density integrates to 1 exactly.
  out.weights = out.weights / sum;
  for (int64_t i = 0; i < k; ++i) {
    const at::Tensor s = out.covariances[i];
    const double scale = s.abs().max().item<double>();
    const double asymmetry = (s - s.t()).abs().max().item<double>();
    if (asymmetry > kSymmetryTolerance * scale) {
      return absl::InvalidArgumentError(
          absl::StrCat("prior.covariances[", i, "]: not symmetric (max |S - S^T| = ", asymmetry,
                       ", max |S| = ", scale, ")"));
    }
  }
  // Exact symmetry from here on, so the Cholesky factor and every derived matrix agree.
  out.covariances = (0.5 * (out.covariances + out.covariances.transpose(1, 2))).contiguous();
  return out;
}

// Batched x [B, n] as float64; throws on a wrong shape (programming error, not user input).
at::Tensor AsBatch(const at::Tensor& x, int64_t n, const char* what) {
  TORCH_CHECK(x.defined() && x.dim() == 2 && x.size(1) == n, what, ": expected [batch, ", n,
              "], got ", x.sizes());
  return x.to(at::kDouble);
}

}  // namespace

absl::StatusOr<std::unique_ptr<GaussianMixture>> GaussianMixture::Create(
    const GaussianMixtureSpec& spec) {
  return GuardTorchOr<std::unique_ptr<GaussianMixture>>(
      "GaussianMixture::Create", [&]() -> absl::StatusOr<std::unique_ptr<GaussianMixture>> {
        INVNET_ASSIGN_OR_RETURN(GaussianMixtureSpec valid, ValidatedSpec(spec));
        auto [cholesky, info] = at::linalg_cholesky_ex(valid.covariances);
        auto info_acc = info.accessor<int, 1>();
        for (int64_t i = 0; i < info.size(0); ++i) {
          if (info_acc[i] != 0) {
            return absl::InvalidArgumentError(
                absl::StrCat("prior.covariances[", i, "]: not positive definite"));
          }
        }
        std::unique_ptr<GaussianMixture> mixture(new GaussianMixture());
        mixture->spec_ = std::move(valid);
        mixture->cholesky_ = cholesky.contiguous();
        mixture->precisions_ = at::cholesky_inverse(cholesky);
        mixture->precisions_ =
            (0.5 * (mixture->precisions_ + mixture->precisions_.transpose(1, 2))).contiguous();
        mixture->log_dets_ = 2.0 * cholesky.diagonal(0, 1, 2).log().sum(1);
        return mixture;
      });
}

absl::StatusOr<std::unique_ptr<GaussianMixture>> GaussianMixture::Isotropic(
    const std::vector<double>& weights, const at::Tensor& means,
    const std::vector<double>& stddevs) {
  return GuardTorchOr<std::unique_ptr<GaussianMixture>>(
      "GaussianMixture::Isotropic", [&]() -> absl::StatusOr<std::unique_ptr<GaussianMixture>> {
        INVNET_ASSIGN_OR_RETURN(at::Tensor mu, CheckedFloat64(means, 2, "prior.means", "[K, n]"));
        const int64_t k = mu.size(0);
        if (static_cast<int64_t>(stddevs.size()) != k) {
          return absl::InvalidArgumentError(absl::StrCat(
              "prior.stddevs: expected one per component (", k, "), got ", stddevs.size()));
        }
        for (int64_t i = 0; i < k; ++i) {
          if (!(stddevs[i] > 0.0) || !std::isfinite(stddevs[i])) {
            return absl::InvalidArgumentError(absl::StrCat(
                "prior.stddevs[", i, "]: must be positive and finite (got ", stddevs[i], ")"));
          }
        }
        const at::Tensor sd = at::tensor(stddevs, at::kDouble);
        GaussianMixtureSpec spec;
        spec.weights = at::tensor(weights, at::kDouble);
        spec.means = mu;
        spec.covariances =
            (sd.pow(2).view({k, 1, 1}) * at::eye(mu.size(1), at::kDouble)).contiguous();
        return Create(spec);
      });
}

absl::StatusOr<std::unique_ptr<GaussianMixture>> GaussianMixture::Diagonal(
    const std::vector<double>& weights, const at::Tensor& means, const at::Tensor& variances) {
  return GuardTorchOr<std::unique_ptr<GaussianMixture>>(
      "GaussianMixture::Diagonal", [&]() -> absl::StatusOr<std::unique_ptr<GaussianMixture>> {
        INVNET_ASSIGN_OR_RETURN(at::Tensor mu, CheckedFloat64(means, 2, "prior.means", "[K, n]"));
        INVNET_ASSIGN_OR_RETURN(at::Tensor var,
                                CheckedFloat64(variances, 2, "prior.variances", "[K, n]"));
        if (var.sizes() != mu.sizes()) {
          return absl::InvalidArgumentError(absl::StrCat("prior.variances: expected ",
                                                         ShapeString(mu), " like prior.means, got ",
                                                         ShapeString(var)));
        }
        at::Tensor bad = var.le(0.0);
        if (bad.any().item<bool>()) {
          at::Tensor first = bad.nonzero()[0];
          const int64_t i = first[0].item<int64_t>();
          const int64_t j = first[1].item<int64_t>();
          return absl::InvalidArgumentError(absl::StrCat("prior.variances[", i, "][", j,
                                                         "]: must be positive (got ",
                                                         var[i][j].item<double>(), ")"));
        }
        GaussianMixtureSpec spec;
        spec.weights = at::tensor(weights, at::kDouble);
        spec.means = mu;
        spec.covariances = at::diag_embed(var).contiguous();
        return Create(spec);
      });
}

at::Tensor GaussianMixture::Sample(int64_t count, at::Generator generator) const {
  TORCH_CHECK(count >= 0, "GaussianMixture::Sample: negative count ", count);
  const int64_t n = dim();
  at::Tensor out = at::empty({count, n}, at::kDouble);
  if (count == 0) return out;
  const at::Tensor component =
      at::multinomial(spec_.weights, count, /*replacement=*/true, generator);
  const at::Tensor z = at::randn({count, n}, generator, at::kDouble);
  // Per component rather than one batched [count, n, n] product: memory stays O(count * n).
  for (int64_t k = 0; k < num_components(); ++k) {
    const at::Tensor rows = component.eq(k).nonzero().squeeze(1);
    if (rows.numel() == 0) continue;
    const at::Tensor draws = spec_.means[k] + at::matmul(z.index_select(0, rows), cholesky_[k].t());
    out.index_copy_(0, rows, draws);
  }
  return out;
}

at::Tensor GaussianMixture::LogComponentDensities(const at::Tensor& x) const {
  const int64_t n = dim();
  const at::Tensor xd = AsBatch(x, n, "GaussianMixture: x");
  // diff [K, n, B]; whitened = L_k^-1 (x - mu_k).
  const at::Tensor diff = (xd.unsqueeze(0) - spec_.means.unsqueeze(1)).transpose(1, 2);
  const at::Tensor whitened = at::linalg_solve_triangular(cholesky_, diff, /*upper=*/false);
  const at::Tensor mahalanobis = whitened.pow(2).sum(1);                                  // [K, B]
  const at::Tensor log_norm = spec_.weights.log() - 0.5 * log_dets_ - 0.5 * n * kLog2Pi;  // [K]
  return (log_norm.unsqueeze(1) - 0.5 * mahalanobis).t();                                 // [B, K]
}

at::Tensor GaussianMixture::LogDensity(const at::Tensor& x) const {
  return at::logsumexp(LogComponentDensities(x), 1);
}

at::Tensor GaussianMixture::Responsibilities(const at::Tensor& x) const {
  return at::softmax(LogComponentDensities(x), 1);
}

at::Tensor GaussianMixture::Score(const at::Tensor& x) const {
  const at::Tensor xd = AsBatch(x, dim(), "GaussianMixture::Score: x");
  const at::Tensor gamma = Responsibilities(xd);                          // [B, K]
  const at::Tensor to_mean = spec_.means.unsqueeze(0) - xd.unsqueeze(1);  // [B, K, n]
  const at::Tensor pulls = at::einsum("kij,bkj->bki", {precisions_, to_mean});
  return (gamma.unsqueeze(2) * pulls).sum(1);
}

at::Tensor GaussianMixture::LogDensityHessian(const at::Tensor& x) const {
  // sum_k g_k [u_k u_k^T - S_k^-1] - s s^T with u_k = S_k^-1 (mu_k - x) and s = sum_k g_k u_k,
  // evaluated as sum_k g_k (u_k - s)(u_k - s)^T - sum_k g_k S_k^-1 (equal because sum_k g_k = 1):
  // far from the components u_k and s are huge and nearly equal, and the centred form does not
  // cancel them.
  const int64_t n = dim();
  const int64_t k = num_components();
  const at::Tensor xd = AsBatch(x, n, "GaussianMixture::LogDensityHessian: x");
  const int64_t b = xd.size(0);
  const at::Tensor gamma = Responsibilities(xd);
  const at::Tensor to_mean = spec_.means.unsqueeze(0) - xd.unsqueeze(1);
  const at::Tensor pulls = at::einsum("kij,bkj->bki", {precisions_, to_mean});  // [B, K, n]
  const at::Tensor score = (gamma.unsqueeze(2) * pulls).sum(1, /*keepdim=*/true);
  const at::Tensor centred = pulls - score;
  const at::Tensor spread = at::matmul((gamma.unsqueeze(2) * centred).transpose(1, 2), centred);
  const at::Tensor mixed_precision =
      at::matmul(gamma, precisions_.view({k, n * n})).view({b, n, n});
  return spread - mixed_precision;
}

at::Tensor GaussianMixture::Mean() const { return at::matmul(spec_.weights, spec_.means); }

at::Tensor GaussianMixture::Covariance() const {
  // Centred form: sum_k w_k (S_k + (mu_k - mu)(mu_k - mu)^T), no cancellation.
  const at::Tensor centred = spec_.means - Mean().unsqueeze(0);  // [K, n]
  const at::Tensor weighted = spec_.weights.unsqueeze(1) * centred;
  const int64_t k = num_components();
  const int64_t n = dim();
  return at::matmul(spec_.weights, spec_.covariances.view({k, n * n})).view({n, n}) +
         at::matmul(weighted.t(), centred);
}

absl::StatusOr<std::unique_ptr<EmpiricalDataset>> EmpiricalDataset::Create(at::Tensor samples) {
  return GuardTorchOr<std::unique_ptr<EmpiricalDataset>>(
      "EmpiricalDataset::Create", [&]() -> absl::StatusOr<std::unique_ptr<EmpiricalDataset>> {
        const int64_t n = samples.defined() && samples.dim() == 2 ? samples.size(1) : 1;
        if (n < 1) {
          return absl::InvalidArgumentError(
              "dataset.samples: expected [N, n] with n >= 1, got n = 0");
        }
        INVNET_RETURN_IF_ERROR(CheckBatch(samples, n, "dataset.samples"));
        std::unique_ptr<EmpiricalDataset> dataset(new EmpiricalDataset());
        dataset->samples_ = samples.to(at::kDouble).contiguous();
        return dataset;
      });
}

at::Tensor EmpiricalDataset::Sample(int64_t count, at::Generator generator) const {
  TORCH_CHECK(count >= 0, "EmpiricalDataset::Sample: negative count ", count);
  const at::Tensor rows = at::randint(size(), {count}, generator, at::kLong);
  return samples_.index_select(0, rows);
}

absl::StatusOr<std::pair<std::unique_ptr<EmpiricalDataset>, at::Tensor>>
EmpiricalDataset::SplitHoldout(const at::Tensor& holdout_rows) const {
  const int64_t holdout = holdout_rows.numel();
  if (holdout <= 0 || holdout >= size()) {
    return absl::InvalidArgumentError(absl::StrCat("holdout: must be in [1, ", size() - 1,
                                                   "] for a dataset of ", size(), " samples, got ",
                                                   holdout));
  }
  using Result = std::pair<std::unique_ptr<EmpiricalDataset>, at::Tensor>;
  return GuardTorchOr<Result>("EmpiricalDataset::SplitHoldout", [&]() -> absl::StatusOr<Result> {
    at::Tensor rows = holdout_rows.to(at::kLong).reshape({-1});
    if (rows.min().item<int64_t>() < 0 || rows.max().item<int64_t>() >= size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("holdout: row indices must lie in [0, ", size(), ")"));
    }
    at::Tensor keep = at::ones({size()}, at::kBool);
    keep.index_fill_(0, rows, false);
    if (keep.sum().item<int64_t>() != size() - holdout) {
      return absl::InvalidArgumentError("holdout: row indices must be distinct");
    }
    std::unique_ptr<EmpiricalDataset> train(new EmpiricalDataset());
    train->samples_ = samples_.index_select(0, keep.nonzero().squeeze(1)).clone();
    return Result(std::move(train), samples_.index_select(0, rows).clone());
  });
}

}  // namespace invnet
