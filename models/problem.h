#ifndef INVNET_MODELS_PROBLEM_H_
#define INVNET_MODELS_PROBLEM_H_

// Plain descriptions of what a network is trained for (the inverse problem) and how (the loss
// and its schedule). These are the records a checkpoint carries and the RPC contract mirrors;
// the objects that act on them live in operators.h, priors.h and trainer.h.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "models/operators.h"

namespace invnet {

// Prior p_X = sum_k weights_k N(means_k, covariances_k), float64.
struct GaussianMixtureSpec {
  at::Tensor weights;      // [K], positive, summing to 1
  at::Tensor means;        // [K, n]
  at::Tensor covariances;  // [K, n, n], symmetric positive definite
};

// An uploaded set of training samples, by reference (the samples live in the repository).
struct DatasetRef {
  std::string name;
  int64_t num_samples = 0;
  int64_t dim = 0;
  // Identifies the exact samples trained on (server/dataset_store.h, DatasetFingerprint), so a
  // dataset deleted and uploaded again under the same name is told apart. Empty in checkpoints
  // written before it existed.
  std::string fingerprint;
};

// y = A x + delta * eta, eta ~ N(0, I); x from the prior or from a dataset (exactly one).
struct ProblemSpec {
  std::string preset;  // the preset's name when built from one ("bimodal2d"), else empty
  OperatorSpec op;
  double noise_level = 0.0;  // delta >= 0
  std::optional<GaussianMixtureSpec> prior;
  std::optional<DatasetRef> dataset;
};

enum class LossKind {
  kApproximation,   // 1/2 ||phi(x) - t||^2
  kReconstruction,  // 1/2 ||phi^-1(y) - x||^2, implicit gradients through the solve
  kLogDet,          // 1/2 ||phi(x) - t||^2 - alpha log det J_phi(x)   (posterior-mean-like)
  kDivergence,      // 1/2 ||phi(x) - t||^2 - alpha div phi(x)         (MAP-like)
};

enum class TargetSpace {
  kMeasurement,  // t = y: phi approximates A (needs m = n)
  kNormal,       // t = A^T y: phi approximates A^T A (any m); inputs are mapped by A^T first
};

// How log det J_phi is estimated above TrainingSpec::exact_jacobian_max_dim (at or below it the
// exact slogdet of every block's Jacobian is used, whatever this says). jacobian.h has the maths.
enum class LogDetEstimator {
  // Unbiased, value and gradient: the power series of each block truncated at a random number of
  // terms N (two always, then geometric with continuation probability from the block's bound),
  // term t weighted by 1 / P(N >= t), gradient by the Neumann series (Chen et al. 2019).
  kRussianRoulette,
  // Biased: log_det_series_terms terms. At a block eigenvalue -L the gradient in that direction
  // is (1 - L^terms) times the truth (0.79x at L = 0.857, 10 terms); the value's error is at most
  // n * sum_{t > terms} L^t / t per block.
  kTruncatedSeries,
};

absl::string_view LossKindName(LossKind kind);  // "approximation", "reconstruction", "logdet", ...
absl::StatusOr<LossKind> ParseLossKind(absl::string_view name);
absl::string_view TargetSpaceName(TargetSpace space);  // "measurement", "normal"
absl::StatusOr<TargetSpace> ParseTargetSpace(absl::string_view name);
// "russian_roulette", "truncated_series".
absl::string_view LogDetEstimatorName(LogDetEstimator estimator);
absl::StatusOr<LogDetEstimator> ParseLogDetEstimator(absl::string_view name);

// Which samples of a dataset problem are held out for validation and test pairs.
enum class HoldoutSplit {
  kTail,               // the last ones (checkpoints written before issue 12)
  kSeededPermutation,  // a fixed seeded permutation's first ones (models/trainer.h, SplitDataset)
};

// How to train: the loss, the optimiser schedule and the evaluation cadence.
struct TrainingSpec {
  LossKind loss = LossKind::kApproximation;
  // alpha, the regulariser's weight; negative means "delta^2" (the derivations' choice), which
  // the trainer resolves and records.
  double loss_weight = -1.0;
  TargetSpace target_space = TargetSpace::kNormal;
  int64_t steps = 3000;
  int64_t batch_size = 512;
  double learning_rate = 3e-3;   // Adam; chosen with the architecture (iresnet.h, num_blocks)
  bool cosine_decay = true;      // decay the learning rate to 0 along a cosine (else constant)
  int64_t warmup_steps = 0;      // linear warm-up from 0 over the first steps
  double grad_clip_norm = 0.0;   // global-norm clipping; 0 = off
  uint64_t seed = 0;             // data, noise and probe draws (the architecture has its own)
  int64_t validation_every = 250;  // steps between validations; 0 = only at the end
  int64_t validation_size = 1000;  // held-out pairs drawn once
  HoldoutSplit holdout_split = HoldoutSplit::kSeededPermutation;
  // Jacobian estimators (losses kLogDet, kDivergence; the reconstruction loss's adjoint solve):
  // exact for n <= exact_jacobian_max_dim, unbiased stochastic estimators above (Hutchinson for
  // the divergence, log_det_estimator for log det). 32, not 64: tests/bench/log_det_bench (one
  // core, CPU seconds per step on blur64's 6 x 256 network) measures log det 1.05 s exact against
  // 0.046 s Russian roulette at n = 64 (23x), divergence 1.00 s against 0.036 s Hutchinson (27x);
  // both estimators are unbiased, so exactness at n = 64 would buy only lower variance.
  int64_t exact_jacobian_max_dim = 32;
  int64_t hutchinson_probes = 1;
  LogDetEstimator log_det_estimator = LogDetEstimator::kRussianRoulette;
  int64_t log_det_series_terms = 10;  // kTruncatedSeries only
  // Inverse used inside the reconstruction loss and validation.
  double solver_tolerance = 1e-5;
  int64_t solver_max_iterations = 500;
};

// Combinations of loss and target space the theory (models/README.md section 3) does not support,
// one sentence each: the log-det loss in normal space (its stationary point is Tweedie's formula
// in measurement space only, so phi^-1 is not known to approximate the posterior mean), and the
// divergence loss in measurement space with A != I (its minimiser's inverse solves the MAP
// condition only in normal space). Training proceeds; the job record and the model version
// carry these. Empty for every supported combination.
std::vector<std::string> TrainingWarnings(const ProblemSpec& problem, const TrainingSpec& training);

// Magnitude limits of a training request (ValidateProblemMagnitudes). The network trains in
// float32, whose squares overflow beyond about 1.8e19; values inside these limits keep every
// loss term finite, and covariances inside the conditioning limit keep the exact Bayesian
// references (Cholesky, posterior covariances) accurate in float64.
inline constexpr double kMaxProblemValue = 1e6;           // |entry|, noise_level, loss_weight
inline constexpr double kMaxMeasurementScale = 1e9;       // ||A||_F * (max |x|) + 6 delta
inline constexpr double kMaxCovarianceCondition = 1e12;   // per component, estimated
inline constexpr double kMaxLearningRate = 1.0;           // Adam; above, training only diverges

// OK, or INVALID_ARGUMENT naming the first field whose magnitude is out of range: an entry of
// operator.dense.matrix, operator.convolution.kernel, prior.means, prior.covariances or of the
// dataset's samples above kMaxProblemValue; problem.noise_level or training.loss_weight above
// kMaxProblemValue; the measurement scale above kMaxMeasurementScale; a covariance whose
// condition number exceeds kMaxCovarianceCondition. `dataset_samples` may be undefined. Checks
// magnitudes only: shapes and definiteness are LinearOperator::Create's and
// GaussianMixture::Create's (a covariance that is not positive definite passes here).
absl::Status ValidateProblemMagnitudes(const ProblemSpec& problem, const TrainingSpec& training,
                                       const at::Tensor& dataset_samples);

// `value` with as few digits as still read back as the same double: integers below 1e16 in
// full ("10000001"), others shortest ("0.001", "1e+30"). For messages that quote a limit or a
// value exactly.
std::string FormatExact(double value);

}  // namespace invnet

#endif  // INVNET_MODELS_PROBLEM_H_
