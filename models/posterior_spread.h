#ifndef INVNET_MODELS_POSTERIOR_SPREAD_H_
#define INVNET_MODELS_POSTERIOR_SPREAD_H_

// Posterior uncertainty from a trained network itself: the per-sample posterior standard
// deviation sqrt(diag Cov[x | y]) read off the Jacobian of phi at the reconstruction x_hat, for
// the two regularised losses whose minimisers tie that Jacobian to the posterior (models/README.md
// section 3). Notation: y = A x + delta eta, alpha the loss weight (delta^2 by default),
// J = J_phi(x_hat), sym(M) = (M + M^T) / 2.
//
// "laplace-divergence" (loss divergence, target space normal, t = A^T y). The minimiser is
//   phi(x) = A^T A x - alpha grad log p_X(x),  so  J = A^T A - alpha Hess log p_X(x).
// The negative log posterior U(x) = ||A x - y||^2 / (2 delta^2) - log p_X(x) has the Hessian
//   Hess U = A^T A / delta^2 - Hess log p_X = A^T A / delta^2 + (J - A^T A) / alpha,
// which is J / delta^2 when alpha = delta^2; then x_hat = phi^-1(A^T y) solves grad U = 0 (the
// MAP-like estimate) and the Laplace approximation there is Cov = (Hess U)^-1 = delta^2 J^-1.
// We use H = (1/delta^2 - 1/alpha) A^T A + sym(J) / alpha (so any alpha > 0 is honoured) and
// std_i = sqrt((H^-1)_ii) by Cholesky.
//
// "tweedie-log-det" (loss logdet, target space measurement, t = y, A square and invertible).
// The stationary point satisfies A phi^-1(y) = y + alpha grad log q(y), q the density of phi(X).
// Differentiating in y:  A J_{phi^-1}(y) = I + alpha Hess log q(y).  Second-order Tweedie for
// y = A x + delta eta is Cov[A x | y] = delta^2 (I + delta^2 Hess log p_Y(y)); with q in place
// of p_Y (as the first-order identity has it)
//   Cov[A x | y] = delta^2 T,   T = I + (delta^2 / alpha) (A J_{phi^-1}(y) - I),
// T = A J_{phi^-1}(y) when alpha = delta^2. J_{phi^-1}(y) = J^-1 at x_hat = phi^-1(y), so
//   Cov[x | y] = delta^2 A^-1 T A^-T = delta^2 J^-1 A^-T      (alpha = delta^2).
// (The Jacobian of A phi^-1 is A J_{phi^-1}: the left A^-1 cancels it, so the covariance is
// delta^2 J_{phi^-1} A^-T, not delta^2 A^-1 J_{phi^-1} A^-T.) We symmetrise T, factor
// sym(T) = L L^T and return std_i = delta ||row i of A^-1 L||.
//
// Symmetrisation: J is a Hessian (plus a multiple of I) only at the exact minimiser; a trained
// network's J is nearly, not exactly, symmetric. The symmetric part is the Hessian estimate we
// use (for a symmetric matrix it changes nothing). Where that estimate is not positive definite
// (Cholesky fails: x_hat is not a local maximum of the approximated posterior, or the network
// is too far from the minimiser there) the sample's std is NaN: no Gaussian approximation
// exists, and a clamped number would pretend one did.
//
// Exactness: on a single-Gaussian prior the divergence minimiser is linear and H is the exact
// posterior precision (for any alpha). The log-det network's q is the push-forward of the clean
// prior, not p_Y, so even at its minimiser the covariance differs from the exact one at second
// order: in 1-D with r = delta^2 / (a^2 s), variance ratio 2 (1 + r) / (1 + sqrt(1 + 4 r)),
// about 1 + r^2 (r = 0.25: std 1.8% high).
//
// Cost: the exact Jacobian (n tangents through every layer) per sample, in float64, in chunks
// of at most kPosteriorSpreadChunkBytes working memory (memory_estimate.h), polling
// `should_stop` between chunks. Above kPosteriorSpreadMaxDim: UNIMPLEMENTED. (A probing estimate
// of diag(H^-1), e.g. Hutchinson's diagonal estimator, would need a linear solve with J per
// probe and carries a relative error ~ sqrt(2 / probes); it is not implemented.)
//
// Thread safety: pure functions of immutable inputs; may run concurrently.

#include <cstdint>
#include <functional>

#include <ATen/core/Tensor.h>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "models/problem.h"

namespace invnet {

class FrozenIResNet;
class LinearOperator;

// Largest n for which the exact Jacobians are computed.
inline constexpr int64_t kPosteriorSpreadMaxDim = 64;
// Working memory of one chunk of samples.
inline constexpr double kPosteriorSpreadChunkBytes = 64.0 * (1 << 20);
// An invertible A is needed in measurement space; a condition number above this is refused
// (A^-1 would amplify the Jacobian's rounding beyond any meaning).
inline constexpr double kPosteriorSpreadMaxCondition = 1e10;

enum class PosteriorSpreadMethod {
  kLaplaceDivergence,  // "laplace-divergence"
  kTweedieLogDet,      // "tweedie-log-det"
};
absl::string_view PosteriorSpreadMethodName(PosteriorSpreadMethod method);

// What the network was trained for.
struct PosteriorSpreadSetup {
  LossKind loss = LossKind::kDivergence;
  TargetSpace target_space = TargetSpace::kNormal;
  double loss_weight = 0.0;  // alpha, resolved (> 0)
  double noise_level = 0.0;  // delta (> 0)
};

// The method for a model, or FAILED_PRECONDITION naming the loss and target space (approximation
// and reconstruction losses, log-det in normal space, divergence in measurement space), delta or
// alpha <= 0, or an A that is not square and invertible (measurement space); UNIMPLEMENTED for
// dim > kPosteriorSpreadMaxDim.
absl::StatusOr<PosteriorSpreadMethod> PosteriorSpreadMethodFor(const PosteriorSpreadSetup& setup,
                                                               const LinearOperator& op);

struct PosteriorSpread {
  PosteriorSpreadMethod method = PosteriorSpreadMethod::kLaplaceDivergence;
  at::Tensor std;         // float64 [batch, n]; a row is NaN where the covariance is not defined
  int64_t undefined = 0;  // rows that are NaN
};

// The network's posterior std at x_hat [batch, n] (the reconstructions phi^-1(t), any float
// dtype). PosteriorSpreadMethodFor's codes; INVALID_ARGUMENT for a bad x_hat; CANCELLED when
// `should_stop` (polled between chunks) asks to stop.
absl::StatusOr<PosteriorSpread> NetworkPosteriorSpread(
    const FrozenIResNet& network, const LinearOperator& op, const PosteriorSpreadSetup& setup,
    const at::Tensor& x_hat, const std::function<bool()>& should_stop = {});

}  // namespace invnet

#endif  // INVNET_MODELS_POSTERIOR_SPREAD_H_
