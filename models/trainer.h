#ifndef INVNET_MODELS_TRAINER_H_
#define INVNET_MODELS_TRAINER_H_

// Trains an iResNet phi ~ A with one of the four losses (losses.h) and returns a checkpoint.
//
// Every step draws a fresh batch x (from the prior or the dataset) and fresh noise,
// y = A x + delta * eta, advances the spectral-norm power iteration, and takes one Adam step on
// the loss, with an optional linear warm-up, an optional cosine decay of the learning rate to 0
// and optional global-norm gradient clipping. Every `validation_every` steps (and at the end) the inverse is
// evaluated on a held-out set drawn once: reconstruction MSE (and its ratio to the exact
// posterior mean's when the prior is a Gaussian mixture), forward error, converged fraction.
// After the last step the spectral norms are calibrated exactly (IResNet::CalibrateSpectralNorms)
// and the final metrics are measured on the certified network.
//
// All randomness comes from generators seeded by training.seed (the architecture has its own
// seed), so a run is reproducible for a fixed seed and LibTorch thread count.
//
// Thread safety: Train is reentrant; concurrent calls share nothing. Callbacks run on the
// calling thread.

#include <cstdint>
#include <functional>
#include <optional>

#include <ATen/core/Tensor.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "models/checkpoint.h"
#include "models/evaluation.h"
#include "models/iresnet.h"
#include "models/problem.h"

namespace invnet {

struct TrainingRequest {
  ProblemSpec problem;
  IResNetConfig architecture;
  TrainingSpec training;
  // The samples of problem.dataset, [N, n] (any float dtype); undefined for a prior.
  at::Tensor dataset_samples;
};

struct TrainingProgress {
  int64_t step = 0;         // steps completed
  int64_t total_steps = 0;
  double loss = 0.0;        // the last step's loss
  double learning_rate = 0.0;
  double elapsed_seconds = 0.0;
  double eta_seconds = 0.0;
  std::optional<EvaluationMetrics> validation;  // set on the steps that validated
};

struct TrainerCallbacks {
  std::function<void(const TrainingProgress&)> on_progress;  // after every step
  std::function<bool()> should_stop;  // polled before every step: true cancels the run
};

// Tells a diverging run from a slow one, step by step: FAILED_PRECONDITION ("training
// diverged: ...") once the loss is NaN or infinite, or, after the first kEarlySteps steps, its
// magnitude exceeds kGrowthFactor times the largest magnitude of those steps (at least
// kMagnitudeFloor). A converging run's loss falls, so it never trips.
class DivergenceMonitor {
 public:
  static constexpr int64_t kEarlySteps = 10;
  static constexpr double kGrowthFactor = 1e6;
  static constexpr double kMagnitudeFloor = 1e-6;

  // `step` counts from 0; call it with every step's loss in order.
  absl::Status Check(int64_t step, double loss);

 private:
  double early_magnitude_ = 0.0;
};

// training.loss_weight as the trainer uses it: a negative value (the default) stands for
// delta^2, delta = noise_level.
double EffectiveLossWeight(const TrainingSpec& training, double noise_level);

// OK, or INVALID_ARGUMENT naming the first bad field ("training.batch_size: ...",
// "prior.weights: ...", "target_space: ...", magnitudes: ValidateProblemMagnitudes). Resolves
// nothing; Train calls it first.
absl::Status ValidateTrainingRequest(const TrainingRequest& request);

// A dataset problem's samples [N, n] split into {training part, held-out samples}: the held-out
// part has min(training.validation_size, N / 5) samples (at least 1), chosen by
// training.holdout_split. The permutation is drawn from StreamSeed(0, kDatasetSplit), not from
// the training seed, so every model trained on one dataset holds out the same samples (test
// pairs drawn for one model of an experiment were never trained on by another). The trainer
// validates on the held-out part; DrawTestPairs draws from it. INVALID_ARGUMENT for N < 2.
absl::StatusOr<std::pair<std::unique_ptr<EmpiricalDataset>, at::Tensor>> SplitDataset(
    const at::Tensor& samples, const TrainingSpec& training);

// The trained network's checkpoint (training.loss_weight resolved to a number), or
// INVALID_ARGUMENT (bad request, ValidateTrainingRequest), CANCELLED (should_stop),
// FAILED_PRECONDITION (the loss diverged, DivergenceMonitor), INTERNAL (a LibTorch failure).
absl::StatusOr<Checkpoint> Train(const TrainingRequest& request,
                                 const TrainerCallbacks& callbacks = {});

}  // namespace invnet

#endif  // INVNET_MODELS_TRAINER_H_
