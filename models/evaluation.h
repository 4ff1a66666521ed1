#ifndef INVNET_MODELS_EVALUATION_H_
#define INVNET_MODELS_EVALUATION_H_

// The metrics of models/README.md section 5, for a network's inverse or any other estimator, on a
// set of held-out test pairs (x, y):
//   mse               mean ||x_hat - x||^2                    (Bayes risk of the estimator)
//   mse_ratio_to_pm   mse / mse of the exact posterior mean   (1 = Bayes-optimal)
//   rms_to_pm/map     sqrt(mean ||x_hat - x_PM||^2), same for the MAP
//   forward_error     sqrt(mean ||phi(x) - A x||^2) (or against A^T A x in normal space)
//   converged_fraction, mean_iterations   of the network's inverse
//   mean_posterior_std  the network's own posterior std (posterior_spread.h), mean over the
//                     defined entries
//   std_ratio_*       that std over the exact one, per sample and coordinate: mean, median and
//                     10% / 90% quantiles
//   std_undefined_fraction   samples where the network's std is undefined (NaN rows)
// Quantities that do not apply (no reference, not a network, no spread asked for) are NaN.

#include <cstdint>
#include <functional>
#include <limits>
#include <memory>

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include "absl/status/statusor.h"
#include "models/estimators.h"
#include "models/inverse.h"
#include "models/operators.h"
#include "models/posterior_spread.h"
#include "models/priors.h"
#include "models/problem.h"

namespace invnet {

struct TestSet {
  at::Tensor x;    // [count, n], float64
  at::Tensor y;    // [count, m], float64
  at::Tensor pm;   // [count, n] exact posterior means, or undefined
  at::Tensor map;  // [count, n] exact MAP estimates, or undefined
  at::Tensor posterior_std;  // [count, n] exact posterior std, or undefined
};

// `count` pairs x ~ source, y = A x + delta * eta, drawn with `generator`. With `references`,
// also the exact PM, MAP and posterior std for every y.
TestSet DrawTestSet(const SignalSource& source, const LinearOperator& op, double noise_level,
                    int64_t count, at::Generator generator,
                    const BayesEstimators* references = nullptr);

// Pairs as DrawTestSet draws them (without references), in blocks of kTestSetBlockRows, asking
// `should_stop` (may be empty) between blocks: CANCELLED when it says to, so a caller who left
// does not keep the server drawing a million pairs. Up to kTestSetBlockRows pairs, the draws are
// DrawTestSet's own.
inline constexpr int64_t kTestSetBlockRows = 16384;
absl::StatusOr<TestSet> DrawTestSetUnlessStopped(const SignalSource& source,
                                                 const LinearOperator& op, double noise_level,
                                                 int64_t count, at::Generator generator,
                                                 const std::function<bool()>& should_stop);

struct EvaluationMetrics {
  static constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
  double mse = kNaN;
  double mse_ratio_to_pm = kNaN;
  double rms_to_pm = kNaN;
  double rms_to_map = kNaN;
  double forward_error = kNaN;
  double converged_fraction = kNaN;
  double mean_iterations = kNaN;
  double mean_posterior_std = kNaN;
  double std_ratio_mean = kNaN;
  double std_ratio_median = kNaN;
  double std_ratio_q10 = kNaN;
  double std_ratio_q90 = kNaN;
  double std_undefined_fraction = kNaN;
};

// Metrics of an arbitrary estimate x_hat [count, n] of test.x.
EvaluationMetrics EvaluateEstimate(const at::Tensor& x_hat, const TestSet& test);

// Metrics of a network's inverse: x_hat = phi^-1(t), t = y or A^T y, plus the forward error.
// The network runs in the dtype its weights are used in for serving (float32 inputs). With
// `spread` (what the network was trained for), also its mean posterior std, and with
// test.posterior_std the std ratios; PosteriorSpreadMethodFor's errors when the network has no
// posterior std. CANCELLED when options.should_stop (polled by the solve, the forward pass and
// the spread between chunks) asks to stop.
absl::StatusOr<EvaluationMetrics> EvaluateNetwork(const FrozenIResNet& network,
                                                  const LinearOperator& op,
                                                  TargetSpace target_space, const TestSet& test,
                                                  const InverseOptions& options,
                                                  const PosteriorSpreadSetup* spread = nullptr);

}  // namespace invnet

#endif  // INVNET_MODELS_EVALUATION_H_
