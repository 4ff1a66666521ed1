#ifndef INVNET_MODELS_PRIORS_H_
#define INVNET_MODELS_PRIORS_H_

// Sources of training signals x: a Gaussian-mixture prior (known density, so the exact Bayesian
// references of estimators.h apply) or an empirical dataset of samples.
//
// All densities and derivatives are computed in float64 (inputs of other dtypes are converted);
// samples come out in float64 and callers convert. Objects are immutable after Create and safe to
// share between threads; sampling takes the caller's generator, so draws are reproducible.

#include <cstdint>
#include <memory>
#include <vector>

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "models/problem.h"

namespace invnet {

// Anything that draws training signals.
class SignalSource {
 public:
  virtual ~SignalSource() = default;
  virtual int64_t dim() const = 0;
  // `count` signals, [count, dim], float64.
  virtual at::Tensor Sample(int64_t count, at::Generator generator) const = 0;
};

// p(x) = sum_k w_k N(x; mu_k, S_k).
class GaussianMixture final : public SignalSource {
 public:
  // Validates the spec: K >= 1, weights positive and summing to 1 within 1e-6, means [K, n],
  // covariances [K, n, n] symmetric (to 1e-9 relative) positive definite, all finite.
  // INVALID_ARGUMENT naming the field ("prior.covariances[1]: not positive definite").
  static absl::StatusOr<std::unique_ptr<GaussianMixture>> Create(const GaussianMixtureSpec& spec);
  // Shortcuts: component k has covariance stddevs[k]^2 I (isotropic) or diag(variances[k]).
  static absl::StatusOr<std::unique_ptr<GaussianMixture>> Isotropic(
      const std::vector<double>& weights, const at::Tensor& means,
      const std::vector<double>& stddevs);
  static absl::StatusOr<std::unique_ptr<GaussianMixture>> Diagonal(
      const std::vector<double>& weights, const at::Tensor& means, const at::Tensor& variances);

  const GaussianMixtureSpec& spec() const { return spec_; }
  int64_t dim() const override { return spec_.means.size(1); }
  int64_t num_components() const { return spec_.means.size(0); }

  at::Tensor Sample(int64_t count, at::Generator generator) const override;
  // For x [batch, n]: log p(x) [batch]; the score grad log p(x) [batch, n]; the Hessian of
  // log p(x) [batch, n, n]; the responsibilities gamma_k(x) = w_k N(x; mu_k, S_k) / p(x)
  // [batch, K]. Stable in log space far from every component.
  at::Tensor LogDensity(const at::Tensor& x) const;
  at::Tensor Score(const at::Tensor& x) const;
  at::Tensor LogDensityHessian(const at::Tensor& x) const;
  at::Tensor Responsibilities(const at::Tensor& x) const;

  // Mean and covariance of the whole mixture ([n], [n, n]).
  at::Tensor Mean() const;
  at::Tensor Covariance() const;

  // Per component, precomputed: S_k^-1 [K, n, n], Cholesky factors [K, n, n], log det S_k [K].
  const at::Tensor& precisions() const { return precisions_; }
  const at::Tensor& cholesky_factors() const { return cholesky_; }

 private:
  GaussianMixture() = default;
  at::Tensor LogComponentDensities(const at::Tensor& x) const;  // [batch, K], incl. log w_k
  GaussianMixtureSpec spec_;
  at::Tensor precisions_;
  at::Tensor cholesky_;
  at::Tensor log_dets_;
};

// Training samples given as data, drawn uniformly with replacement.
class EmpiricalDataset final : public SignalSource {
 public:
  // samples [N, n], N >= 1, finite. INVALID_ARGUMENT otherwise.
  static absl::StatusOr<std::unique_ptr<EmpiricalDataset>> Create(at::Tensor samples);
  int64_t dim() const override { return samples_.size(1); }
  int64_t size() const { return samples_.size(0); }
  const at::Tensor& samples() const { return samples_; }
  at::Tensor Sample(int64_t count, at::Generator generator) const override;
  // The dataset split into the samples at `holdout_rows` (int64 indices, distinct) and the rest,
  // in their order: {training part, held-out samples}. INVALID_ARGUMENT unless
  // 0 < holdout_rows.numel() < size() and every index lies in [0, size()).
  absl::StatusOr<std::pair<std::unique_ptr<EmpiricalDataset>, at::Tensor>> SplitHoldout(
      const at::Tensor& holdout_rows) const;

 private:
  at::Tensor samples_;  // float64
};

}  // namespace invnet

#endif  // INVNET_MODELS_PRIORS_H_
