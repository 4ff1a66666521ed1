#include "models/trainer.h"

#include <chrono>
#include <cmath>
#include <deque>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/optim/adam.h>

#include "absl/strings/str_cat.h"
#include "models/estimators.h"
#include "models/losses.h"
#include "models/priors.h"
#include "models/seeds.h"
#include "models/torch_status.h"
#include "proto/base/status_macros.h"

namespace invnet {
namespace {

constexpr double kPi = 3.14159265358979323846;
constexpr int64_t kMaxExactJacobianDim = 64;

// Values print exactly: a message about 10000001 must not say "1e+07".
absl::Status OutOfRange(absl::string_view field, int64_t value, absl::string_view range) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", value, " must be ", range));
}
absl::Status OutOfRange(absl::string_view field, double value, absl::string_view range) {
  return absl::InvalidArgumentError(
      absl::StrCat(field, ": ", FormatExact(value), " must be ", range));
}

absl::Status ValidateSchedule(const TrainingSpec& t) {
  if (t.steps < 1 || t.steps > 10000000) {
    return OutOfRange("training.steps", t.steps, "in [1, 10000000]");
  }
  if (t.batch_size < 1 || t.batch_size > 65536) {
    return OutOfRange("training.batch_size", t.batch_size, "in [1, 65536]");
  }
  if (!(t.learning_rate > 0) || !(t.learning_rate <= kMaxLearningRate)) {
    return OutOfRange("training.learning_rate", t.learning_rate,
                      absl::StrCat("in (0, ", FormatExact(kMaxLearningRate), "]"));
  }
  if (t.warmup_steps < 0 || t.warmup_steps > t.steps) {
    return OutOfRange("training.warmup_steps", t.warmup_steps, "in [0, steps]");
  }
  if (!(t.grad_clip_norm >= 0) || !std::isfinite(t.grad_clip_norm)) {
    return OutOfRange("training.grad_clip_norm", t.grad_clip_norm, ">= 0 (0 = off)");
  }
  if (!std::isfinite(t.loss_weight)) {
    return OutOfRange("training.loss_weight", t.loss_weight, "finite (negative = delta^2)");
  }
  if (t.validation_every < 0) {
    return OutOfRange("training.validation_every", t.validation_every, ">= 0");
  }
  if (t.validation_size < 1 || t.validation_size > 1000000) {
    return OutOfRange("training.validation_size", t.validation_size, "in [1, 1000000]");
  }
  // Exact Jacobians cost batch_size x n^2 numbers per layer and a determinant per block:
  // above this dimension the stochastic estimators are the only affordable ones.
  if (t.exact_jacobian_max_dim < 0 || t.exact_jacobian_max_dim > kMaxExactJacobianDim) {
    return OutOfRange("training.exact_jacobian_max_dim", t.exact_jacobian_max_dim,
                      absl::StrCat("in [0, ", kMaxExactJacobianDim, "]"));
  }
  if (t.hutchinson_probes < 1 || t.hutchinson_probes > 64) {
    return OutOfRange("training.hutchinson_probes", t.hutchinson_probes, "in [1, 64]");
  }
  if (t.log_det_series_terms < 1 || t.log_det_series_terms > 100) {
    return OutOfRange("training.log_det_series_terms", t.log_det_series_terms, "in [1, 100]");
  }
  InverseOptions solver;
  solver.tolerance = t.solver_tolerance;
  solver.max_iterations = t.solver_max_iterations;
  return ValidateInverseOptions(solver);
}

// Everything Train needs, built from a validated request.
struct Setup {
  std::unique_ptr<LinearOperator> op;
  std::unique_ptr<GaussianMixture> prior;
  std::unique_ptr<EmpiricalDataset> dataset;  // the training part of the samples
  at::Tensor holdout;                         // validation signals of a dataset
  const SignalSource* source = nullptr;
};

}  // namespace

absl::StatusOr<std::pair<std::unique_ptr<EmpiricalDataset>, at::Tensor>> SplitDataset(
    const at::Tensor& samples, const TrainingSpec& training) {
  INVNET_ASSIGN_OR_RETURN(auto all, EmpiricalDataset::Create(samples));
  if (all->size() < 2) {
    return absl::InvalidArgumentError("dataset: needs at least 2 samples to hold some out");
  }
  const int64_t holdout =
      std::max<int64_t>(1, std::min<int64_t>(training.validation_size, all->size() / 5));
  using Split = std::pair<std::unique_ptr<EmpiricalDataset>, at::Tensor>;
  return GuardTorchOr<Split>("SplitDataset", [&]() -> absl::StatusOr<Split> {
        at::Tensor rows;
        if (training.holdout_split == HoldoutSplit::kTail) {
          rows = at::arange(all->size() - holdout, all->size(), at::kLong);
        } else {
          at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(
              StreamSeed(0, SeedStream::kDatasetSplit));
          rows = at::randperm(all->size(), gen, at::kLong).narrow(0, 0, holdout);
        }
        return all->SplitHoldout(rows);
      });
}

namespace {

absl::StatusOr<Setup> BuildSetup(const TrainingRequest& request) {
  Setup s;
  const ProblemSpec& problem = request.problem;
  INVNET_ASSIGN_OR_RETURN(s.op, LinearOperator::Create(problem.op));
  if (!(problem.noise_level >= 0) || !std::isfinite(problem.noise_level)) {
    return OutOfRange("problem.noise_level", problem.noise_level, "finite and >= 0");
  }
  if (problem.prior.has_value() == problem.dataset.has_value()) {
    return absl::InvalidArgumentError(
        "problem: give exactly one source of signals, a prior or a dataset");
  }
  if (problem.prior.has_value()) {
    INVNET_ASSIGN_OR_RETURN(s.prior, GaussianMixture::Create(*problem.prior));
    s.source = s.prior.get();
  } else {
    const at::Tensor& samples = request.dataset_samples;
    if (!samples.defined() || samples.dim() != 2 || samples.size(0) < 2) {
      return absl::InvalidArgumentError(
          absl::StrCat("dataset '", problem.dataset->name, "': needs at least 2 samples"));
    }
    INVNET_ASSIGN_OR_RETURN(auto split, SplitDataset(samples, request.training));
    s.dataset = std::move(split.first);
    s.holdout = split.second;
    s.source = s.dataset.get();
  }
  const int64_t n = s.op->input_dim();
  if (s.source->dim() != n) {
    return absl::InvalidArgumentError(absl::StrCat(
        "problem: signals have dimension ", s.source->dim(), " but the operator takes ", n));
  }
  if (request.architecture.dim != n) {
    return absl::InvalidArgumentError(absl::StrCat("architecture.dim: ", request.architecture.dim,
                                                   " must equal the signal dimension ", n));
  }
  if (request.training.target_space == TargetSpace::kMeasurement && s.op->output_dim() != n) {
    return absl::InvalidArgumentError(absl::StrCat(
        "target_space: 'measurement' needs a square operator (m = n), got m = ",
        s.op->output_dim(), ", n = ", n, "; use 'normal'"));
  }
  return s;
}

double LearningRate(const TrainingSpec& t, int64_t step) {
  if (step < t.warmup_steps) return t.learning_rate * (step + 1) / t.warmup_steps;
  if (!t.cosine_decay) return t.learning_rate;
  const double span = std::max<int64_t>(1, t.steps - t.warmup_steps);
  const double progress = static_cast<double>(step - t.warmup_steps) / span;
  return t.learning_rate * 0.5 * (1.0 + std::cos(kPi * progress));
}

void ClipGradients(const std::vector<at::Tensor>& params, double max_norm) {
  double total = 0.0;
  for (const at::Tensor& p : params) {
    if (p.grad().defined()) total += p.grad().pow(2).sum().item<double>();
  }
  total = std::sqrt(total);
  if (total <= max_norm || total == 0.0) return;
  for (const at::Tensor& p : params) {
    if (p.grad().defined()) p.mutable_grad().mul_(max_norm / total);
  }
}

absl::StatusOr<EvaluationMetrics> Validate(const IResNet& net, const Setup& setup,
                                           const TrainingSpec& t, const TestSet& test,
                                           FrozenIResNet::Bounds bounds) {
  INVNET_ASSIGN_OR_RETURN(auto frozen, FrozenIResNet::Create(net, bounds));
  InverseOptions solver;
  solver.tolerance = t.solver_tolerance;
  solver.max_iterations = t.solver_max_iterations;
  // While training, validation tracks progress: the cheap per-block solve is enough. The final
  // validation (certified bounds) scores the served network as Reconstruct solves it.
  solver.per_block_tolerance = bounds == FrozenIResNet::Bounds::kEstimated;
  return EvaluateNetwork(*frozen, *setup.op, t.target_space, test, solver);
}

absl::StatusOr<Checkpoint> RunTraining(const TrainingRequest& request, const Setup& setup,
                                       const TrainerCallbacks& callbacks) {
  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  TrainingSpec t = request.training;
  const double delta = request.problem.noise_level;
  t.loss_weight = EffectiveLossWeight(t, delta);

  INVNET_ASSIGN_OR_RETURN(auto net, IResNet::Create(request.architecture, at::kFloat));
  net->SetTraining(true);
  at::Generator gen =
      at::make_generator<at::CPUGeneratorImpl>(StreamSeed(t.seed, SeedStream::kTraining));
  at::Generator validation_gen =
      at::make_generator<at::CPUGeneratorImpl>(StreamSeed(t.seed, SeedStream::kValidation));

  // The held-out validation pairs, with exact posterior means when the prior allows them.
  TestSet validation;
  if (setup.prior) {
    INVNET_ASSIGN_OR_RETURN(auto references,
                            BayesEstimators::Create(*setup.op, *setup.prior, std::max(delta, 1e-12)));
    validation = DrawTestSet(*setup.prior, *setup.op, delta, t.validation_size, validation_gen);
    if (delta > 0) validation.pm = references->PosteriorMean(validation.y);
  } else {
    at::NoGradGuard no_grad;
    validation.x = setup.holdout;
    at::Tensor clean = setup.op->Apply(validation.x);
    validation.y = clean + delta * at::randn(clean.sizes(), validation_gen, clean.options());
  }

  LossOptions loss_options;
  loss_options.kind = t.loss;
  loss_options.target_space = t.target_space;
  loss_options.weight = t.loss_weight;
  loss_options.estimator.exact_max_dim = t.exact_jacobian_max_dim;
  loss_options.estimator.num_probes = t.hutchinson_probes;
  loss_options.estimator.log_det = t.log_det_estimator;
  loss_options.estimator.series_terms = t.log_det_series_terms;
  loss_options.solver.tolerance = t.solver_tolerance;
  loss_options.solver.max_iterations = t.solver_max_iterations;

  std::vector<at::Tensor> params = net->Parameters();
  torch::optim::Adam adam(params, torch::optim::AdamOptions(t.learning_rate));

  std::map<std::string, std::vector<double>> curves;
  const int64_t curve_every = std::max<int64_t>(1, t.steps / 200);
  double window_sum = 0.0;
  int64_t window_count = 0;
  std::deque<double> recent_losses;
  DivergenceMonitor divergence;

  for (int64_t step = 0; step < t.steps; ++step) {
    if (callbacks.should_stop && callbacks.should_stop()) {
      return absl::CancelledError(absl::StrCat("training cancelled after ", step, " of ",
                                               t.steps, " steps"));
    }
    const double lr = LearningRate(t, step);
    for (auto& group : adam.param_groups()) {
      static_cast<torch::optim::AdamOptions&>(group.options()).lr(lr);
    }
    net->PowerIterationStep();
    at::Tensor x = setup.source->Sample(t.batch_size, gen).to(at::kFloat);
    at::Tensor y;
    {
      at::NoGradGuard no_grad;
      at::Tensor clean = setup.op->Apply(x);
      y = clean + delta * at::randn(clean.sizes(), gen, clean.options());
    }
    INVNET_ASSIGN_OR_RETURN(LossValue loss,
                            ComputeLoss(*net, *setup.op, x, y, loss_options, gen));
    const double loss_value = loss.objective.item<double>();
    INVNET_RETURN_IF_ERROR(divergence.Check(step, loss_value));
    adam.zero_grad();
    loss.objective.backward();
    if (t.grad_clip_norm > 0) ClipGradients(params, t.grad_clip_norm);
    adam.step();

    window_sum += loss_value;
    ++window_count;
    recent_losses.push_back(loss_value);
    if (recent_losses.size() > 50) recent_losses.pop_front();
    if ((step + 1) % curve_every == 0 || step + 1 == t.steps) {
      curves["step"].push_back(static_cast<double>(step + 1));
      curves["loss"].push_back(window_sum / window_count);
      window_sum = 0.0;
      window_count = 0;
    }

    TrainingProgress progress;
    progress.step = step + 1;
    progress.total_steps = t.steps;
    progress.loss = loss_value;
    progress.learning_rate = lr;
    progress.elapsed_seconds = std::chrono::duration<double>(Clock::now() - start).count();
    progress.eta_seconds = progress.elapsed_seconds / (step + 1) * (t.steps - step - 1);
    const bool validate_now = t.validation_every > 0 && (step + 1) % t.validation_every == 0 &&
                              step + 1 < t.steps;
    if (validate_now) {
      net->SetTraining(false);
      absl::StatusOr<EvaluationMetrics> metrics =
          Validate(*net, setup, t, validation, FrozenIResNet::Bounds::kEstimated);
      net->SetTraining(true);
      if (!metrics.ok()) return metrics.status();
      curves["val_step"].push_back(static_cast<double>(step + 1));
      curves["val_mse"].push_back(metrics->mse);
      curves["val_forward_error"].push_back(metrics->forward_error);
      progress.validation = *metrics;
    }
    if (callbacks.on_progress) callbacks.on_progress(progress);
  }

  net->SetTraining(false);
  net->CalibrateSpectralNorms();
  INVNET_ASSIGN_OR_RETURN(EvaluationMetrics final_metrics,
                          Validate(*net, setup, t, validation, FrozenIResNet::Bounds::kCertified));
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  curves["val_step"].push_back(static_cast<double>(t.steps));
  curves["val_mse"].push_back(final_metrics.mse);
  curves["val_forward_error"].push_back(final_metrics.forward_error);
  double final_loss = 0.0;
  for (double l : recent_losses) final_loss += l;
  final_loss /= std::max<size_t>(1, recent_losses.size());

  std::map<std::string, double> metrics = {
      {"final_loss", final_loss},
      {"train_seconds", seconds},
      {"steps_per_second", t.steps / seconds},
      {"val_mse", final_metrics.mse},
      {"val_forward_error", final_metrics.forward_error},
      {"val_converged_fraction", final_metrics.converged_fraction},
      {"val_mean_iterations", final_metrics.mean_iterations},
  };
  if (std::isfinite(final_metrics.mse_ratio_to_pm)) {
    metrics["val_mse_ratio_to_pm"] = final_metrics.mse_ratio_to_pm;
  }
  if (callbacks.on_progress) {
    TrainingProgress done;
    done.step = t.steps;
    done.total_steps = t.steps;
    done.loss = final_loss;
    done.elapsed_seconds = seconds;
    done.validation = final_metrics;
    callbacks.on_progress(done);
  }
  return MakeCheckpoint(*net, request.problem, t, std::move(metrics), std::move(curves));
}

}  // namespace

double EffectiveLossWeight(const TrainingSpec& training, double noise_level) {
  return training.loss_weight < 0 ? noise_level * noise_level : training.loss_weight;
}

absl::Status DivergenceMonitor::Check(int64_t step, double loss) {
  constexpr absl::string_view kAdvice =
      "; lower training.learning_rate, set training.grad_clip_norm or rescale the problem";
  if (!std::isfinite(loss)) {
    return absl::FailedPreconditionError(
        absl::StrCat("training diverged: the loss is ", loss, " at step ", step, kAdvice));
  }
  if (step < kEarlySteps) {
    early_magnitude_ = std::max(early_magnitude_, std::abs(loss));
    return absl::OkStatus();
  }
  const double reference = std::max(early_magnitude_, kMagnitudeFloor);
  if (std::abs(loss) > kGrowthFactor * reference) {
    return absl::FailedPreconditionError(absl::StrCat(
        "training diverged: the loss grew to ", FormatExact(loss), " at step ", step,
        ", more than ", FormatExact(kGrowthFactor), " times its early magnitude ",
        FormatExact(reference), kAdvice));
  }
  return absl::OkStatus();
}

absl::Status ValidateTrainingRequest(const TrainingRequest& request) {
  INVNET_RETURN_IF_ERROR(ValidateIResNetConfig(request.architecture));
  INVNET_RETURN_IF_ERROR(ValidateSchedule(request.training));
  return GuardTorch("ValidateTrainingRequest", [&]() -> absl::Status {
    INVNET_RETURN_IF_ERROR(BuildSetup(request).status());
    return ValidateProblemMagnitudes(request.problem, request.training, request.dataset_samples);
  });
}

absl::StatusOr<Checkpoint> Train(const TrainingRequest& request,
                                 const TrainerCallbacks& callbacks) {
  INVNET_RETURN_IF_ERROR(ValidateIResNetConfig(request.architecture));
  INVNET_RETURN_IF_ERROR(ValidateSchedule(request.training));
  return GuardTorchOr<Checkpoint>("Train", [&]() -> absl::StatusOr<Checkpoint> {
    INVNET_ASSIGN_OR_RETURN(Setup setup, BuildSetup(request));
    INVNET_RETURN_IF_ERROR(
        ValidateProblemMagnitudes(request.problem, request.training, request.dataset_samples));
    return RunTraining(request, setup, callbacks);
  });
}

}  // namespace invnet
