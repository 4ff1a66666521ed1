#ifndef INVNET_MODELS_LOSSES_H_
#define INVNET_MODELS_LOSSES_H_

// The four training losses of models/README.md section 3, each evaluated on a batch of signals x
// and their measurements y = A x + delta * eta:
//
//   approximation    1/2 ||phi(x) - t||^2
//   reconstruction   1/2 ||phi^-1(t) - x||^2
//   log-det          1/2 ||phi(x) - t||^2 - alpha log det J_phi(x)
//   divergence       1/2 ||phi(x) - t||^2 - alpha div phi(x)
//
// averaged over the batch, where the target t is y (TargetSpace::kMeasurement, needs m = n) or
// A^T y (TargetSpace::kNormal). Log-determinants and divergences are exact for
// dim <= exact_max_dim and stochastic above (jacobian.h).
//
// The reconstruction loss differentiates through the fixed-point solve implicitly: with
// x_hat = phi^-1(t) solved without a graph, d loss / d theta = -w^T d phi(x_hat) / d theta where
// J_phi(x_hat)^T w = d loss / d x_hat (an exact solve for small dim; block-wise fixed-point
// iteration on J_k^T, a Neumann series, for large dim). No back-propagation through iterations.

#include <cstdint>

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include "absl/status/statusor.h"
#include "models/inverse.h"
#include "models/jacobian.h"
#include "models/operators.h"
#include "models/problem.h"

namespace invnet {

class IResNet;

struct LossOptions {
  LossKind kind = LossKind::kApproximation;
  TargetSpace target_space = TargetSpace::kNormal;
  double weight = 0.0;  // alpha (resolved: the trainer turns "delta^2" into a number)
  JacobianEstimatorOptions estimator;
  InverseOptions solver;  // reconstruction loss: the inverse inside the loss
  // Reconstruction loss, large dim: the transposed block solves stop at this relative change.
  double adjoint_tolerance = 1e-7;
  int64_t adjoint_max_iterations = 500;
};

struct LossValue {
  // A scalar whose gradient w.r.t. the network's parameters is the loss's gradient and whose
  // value is the loss's value (for the reconstruction loss an implicit-gradient surrogate with
  // its value replaced).
  at::Tensor objective;
  double data_term = 0.0;    // batch mean of 1/2 ||phi(x) - t||^2 (or 1/2 ||phi^-1(t) - x||^2)
  double regularizer = 0.0;  // batch mean of log det J or div phi (0 for the other losses)
  double inverse_iterations = 0.0;  // reconstruction loss: mean solver iterations per sample
  double inverse_converged = 1.0;   // reconstruction loss: fraction of converged inverses
};

// t for a batch of measurements y [batch, m]: y itself or A^T y.
at::Tensor TargetFor(const LinearOperator& op, TargetSpace space, const at::Tensor& y);

// x [batch, n] and y [batch, m] in the network's dtype. INVALID_ARGUMENT for mismatched shapes
// (e.g. a measurement-space target with m != n); errors of the inner inverse pass through.
absl::StatusOr<LossValue> ComputeLoss(const IResNet& net, const LinearOperator& op,
                                      const at::Tensor& x, const at::Tensor& y,
                                      const LossOptions& options, at::Generator generator);

}  // namespace invnet

#endif  // INVNET_MODELS_LOSSES_H_
