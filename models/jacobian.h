#ifndef INVNET_MODELS_JACOBIAN_H_
#define INVNET_MODELS_JACOBIAN_H_

// Jacobian quantities of an iResNet phi at a batch of points, as they enter the training losses:
// log det J_phi(x) and div phi(x) = tr J_phi(x).
//
// Everything is computed by forward propagation of tangents through the explicit block
// Jacobians J_k = I + W_L D_{L-1} ... D_1 W_1 (IResNet::LinearizeResidual), so the results are
// ordinary differentiable LibTorch expressions: a loss built from them needs one backward pass,
// not n extra backward passes with create_graph. Call under at::NoGradGuard (or
// c10::InferenceMode) for the forward-only evaluation path.
//
// Small n: exact (full Jacobian, slogdet, trace). Large n: stochastic, and unbiased by default:
// Hutchinson with Rademacher probes for the divergence; for log det a Russian-roulette power
// series with the Neumann-series gradient (unbiased value and gradient), or, as an option, the
// power series truncated at a fixed number of terms (biased; the bias grows as the blocks'
// Lipschitz bounds approach 1, see LogDetEstimator in problem.h). Every function also returns
// phi(x), so a loss evaluates the network once.
//
// Inputs: x [batch, dim] of the network's dtype; a violation throws c10::Error.

#include <cstdint>

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include "models/problem.h"

namespace invnet {

class FrozenIResNet;
class IResNet;

struct ForwardAndValue {
  at::Tensor output;  // phi(x), [batch, dim]
  at::Tensor value;   // the requested quantity, [batch] (or [batch, p, dim] for JVPs)
};

// J_phi(x) v for p tangent vectors per sample stored as rows, [batch, p, dim].
ForwardAndValue JacobianVectorProduct(const IResNet& net, const at::Tensor& x,
                                      const at::Tensor& tangents);
// The full Jacobian J_phi(x), [batch, dim, dim] (value), by propagating the identity.
ForwardAndValue ExactJacobian(const IResNet& net, const at::Tensor& x);
// The same for a served network, from its float64 weights: J_phi(x), float64 [batch, dim, dim]
// (x of any float dtype is converted). Not differentiable; for posterior_spread.h.
at::Tensor ExactJacobian(const FrozenIResNet& net, const at::Tensor& x);
// log det J_phi(x) = sum_k log det J_k(x_k), each by slogdet (det J_k > 0 for an iResNet).
ForwardAndValue ExactLogDet(const IResNet& net, const at::Tensor& x);
// div phi(x) = tr J_phi(x).
ForwardAndValue ExactDivergence(const IResNet& net, const at::Tensor& x);

// Hutchinson: the mean over `num_probes` Rademacher vectors v of v^T J_phi(x) v. Unbiased.
ForwardAndValue HutchinsonDivergence(const IResNet& net, const at::Tensor& x,
                                     int64_t num_probes, at::Generator generator);
// sum_k sum_{t=1..num_terms} (-1)^(t+1) / t * v^T J_{g_k}^t v, averaged over Rademacher probes:
// the power series log det(I + J_g) = sum_t (-1)^(t+1) tr(J_g^t) / t, truncated.
ForwardAndValue PowerSeriesLogDet(const IResNet& net, const at::Tensor& x, int64_t num_terms,
                                  int64_t num_probes, at::Generator generator);

// Russian roulette (Chen et al. 2019, "Residual Flows"), unbiased for log det J_phi(x) and for
// its gradient. Per block g_k: a random number of terms N = exact_terms + G with
// P(G >= j) = q_k^j (one draw per block and call, shared by the batch), and
//   value    sum_{t=1..N} (-1)^(t+1) / t * v^T J^t v / P(N >= t),
//   gradient sum_{t=1..N} (-1)^(t+1) * v^T J^(t-1) dJ v / P(N >= t)   (the Neumann series of
//            tr((I + J)^-1 dJ), the derivative of log det(I + J)),
// averaged over Rademacher probes v. The gradient is attached to `value` through a surrogate
// w^T (J v) whose w = sum_t (-1)^(t+1) (J^T)^(t-1) v / P(N >= t) is formed without a graph, so
// one backward pass suffices and the powers J^t v need no saved activations (the
// "memory-efficient" estimator). Under no-grad (or inference) mode only the value is computed.
// q_k = clamp(L_k, 0.5, 0.95) with L_k the block's estimated bound (EstimatedBlockBounds): the
// variance is finite when L_k^2 < q_k, and the expected number of terms is exact_terms +
// q_k / (1 - q_k) (9 at L = 0.9). G is capped at 100000 terms (probability below 1e-2000).
ForwardAndValue RussianRouletteLogDet(const IResNet& net, const at::Tensor& x,
                                      int64_t exact_terms, int64_t num_probes,
                                      at::Generator generator);

// Chooses exact or stochastic by dimension, as the losses do.
struct JacobianEstimatorOptions {
  int64_t exact_max_dim = 64;   // exact for dim <= this, stochastic above
  int64_t num_probes = 1;       // Hutchinson probes per sample
  LogDetEstimator log_det = LogDetEstimator::kRussianRoulette;  // above exact_max_dim
  int64_t series_terms = 10;    // power-series terms, kTruncatedSeries
  int64_t roulette_exact_terms = 2;  // terms always taken, kRussianRoulette
};
ForwardAndValue LogDet(const IResNet& net, const at::Tensor& x,
                       const JacobianEstimatorOptions& options, at::Generator generator);
ForwardAndValue Divergence(const IResNet& net, const at::Tensor& x,
                           const JacobianEstimatorOptions& options, at::Generator generator);

}  // namespace invnet

#endif  // INVNET_MODELS_JACOBIAN_H_
