#ifndef INVNET_MODELS_ESTIMATORS_H_
#define INVNET_MODELS_ESTIMATORS_H_

// Exact Bayesian reference estimators for y = A x + delta * eta, eta ~ N(0, I), under a
// Gaussian-mixture prior (models/README.md section 4). Everything is batched over y [batch, m] and
// computed in float64 (results are float64). The object precomputes per-component quantities
// once, is immutable, and is safe to share between threads.
//
// With C_k = A S_k A^T + delta^2 I:
//   w_k(y) proportional to pi_k N(y; A mu_k, C_k)        posterior component weights
//   m_k(y) = mu_k + S_k A^T C_k^-1 (y - A mu_k)          component posterior means
//   P_k    = S_k - S_k A^T C_k^-1 A S_k                  component posterior covariances
//   x_PM   = sum_k w_k m_k,  Cov[x|y] = sum_k w_k (P_k + m_k m_k^T) - x_PM x_PM^T

#include <cstdint>
#include <functional>
#include <memory>

#include <ATen/core/Tensor.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "models/operators.h"
#include "models/priors.h"

namespace invnet {

struct MapResult {
  at::Tensor x;          // [batch, n]: the best critical point found
  at::Tensor objective;  // [batch]: 1/2 ||A x - y||^2 - delta^2 log p_X(x) at x
  at::Tensor gradient_norm;  // [batch]: ||grad objective|| at x (first-order optimality)
};

// Which estimators BayesEstimators::Compute evaluates.
struct EstimatorSelection {
  bool posterior_mean = false;
  bool posterior_std = false;
  bool map = false;
  bool wiener = false;
  bool pseudo_inverse = false;
};

// Compute's results, float64; undefined where not selected.
struct Estimates {
  at::Tensor posterior_mean;  // [batch, n]
  at::Tensor posterior_std;   // [batch, n]
  MapResult map;
  at::Tensor wiener;          // [batch, n]
  at::Tensor pseudo_inverse;  // [batch, n]
};

class BayesEstimators {
 public:
  // The operator's input dimension must equal the prior's; noise_level > 0 (for delta = 0 the
  // posterior is degenerate). INVALID_ARGUMENT otherwise. Copies what it needs.
  static absl::StatusOr<std::unique_ptr<BayesEstimators>> Create(const LinearOperator& op,
                                                                 const GaussianMixture& prior,
                                                                 double noise_level);

  int64_t input_dim() const;   // n
  int64_t output_dim() const;  // m

  // y [batch, m] (any float dtype) -> float64 results. Inputs are not validated here beyond
  // shape checks that throw: callers validate user input first (tensor_checks.h).
  at::Tensor PosteriorMean(const at::Tensor& y) const;              // [batch, n]
  at::Tensor PosteriorCovariance(const at::Tensor& y) const;        // [batch, n, n]
  at::Tensor PosteriorStd(const at::Tensor& y) const;               // [batch, n], sqrt of diag
  at::Tensor PosteriorWeights(const at::Tensor& y) const;           // [batch, K]
  // grad_y log p_Y(y), [batch, m] (for Tweedie's identity A x_PM = y + delta^2 grad log p_Y).
  at::Tensor MeasurementScore(const at::Tensor& y) const;
  // MAP: minimises 1/2 ||A x - y||^2 - delta^2 log p_X(x) from every m_k(y) and x_PM(y) (and,
  // for n > 2 and a sample whose second-largest posterior component weight is >= 1e-3, also
  // from m_k(y) +- 1.5 sqrt(lambda_j) u_j along the top two eigenvectors of each component's
  // posterior covariance: 5K + 1 starts) by the EM fixed point
  // x <- (A^T A + d^2 sum_k g_k S_k^-1)^-1 (A^T y + d^2 sum_k g_k S_k^-1 mu_k), polished by
  // damped Newton steps; keeps the start with the lowest objective and reports the objective's
  // gradient norm there.
  MapResult Map(const at::Tensor& y) const;
  // The same search from the K + 1 basic starts only (every m_k(y) and x_PM(y)), for
  // measuring what the extra starts find (tests/bench/map_restarts_bench).
  MapResult MapFromBasicStarts(const at::Tensor& y) const;
  // 1/2 ||A x - y||^2 - delta^2 log p_X(x) for x [batch, n] and y [batch, m].
  at::Tensor MapObjective(const at::Tensor& x, const at::Tensor& y) const;
  // Linear MMSE (Wiener / Tikhonov) estimator for the Gaussian with the prior's mean mu and
  // covariance S: mu + S A^T (A S A^T + delta^2 I)^-1 (y - A mu). Equals PM and MAP when the
  // prior is a single Gaussian.
  at::Tensor Wiener(const at::Tensor& y) const;
  // A^+ y (Moore-Penrose pseudo-inverse; for an invertible A this is A^-1 y).
  at::Tensor PseudoInverse(const at::Tensor& y) const;

  // The selected estimators for y [batch, m], computed in blocks of rows. `should_stop` (may be
  // empty) is polled between blocks and between the MAP search's iterations; when it returns
  // true the computation stops and Compute returns CANCELLED. Shape errors throw (as above).
  absl::StatusOr<Estimates> Compute(const at::Tensor& y, const EstimatorSelection& which,
                                    const std::function<bool()>& should_stop = {}) const;

 private:
  BayesEstimators() = default;
  struct Impl;
  // Map, stopping when *should_stop (if any) asks to: CANCELLED then.
  static absl::StatusOr<MapResult> MapUntil(const Impl& impl, const at::Tensor& y,
                                            const std::function<bool()>* should_stop,
                                            bool principal_starts);
  std::shared_ptr<const Impl> impl_;
};

}  // namespace invnet

#endif  // INVNET_MODELS_ESTIMATORS_H_
