// Training throughput: steps/s of each loss on each preset, and two side-by-side comparisons on
// bimodal2d that show where invnet's training speed comes from.
//
//   build/tests/bench/training_bench [--threads=2] [--steps=20] [--warmup_steps=3] [--repeats=3]
//       [--presets=bimodal2d,blur64] [--comparisons=true] [--fixed_iterations=60]
//
// A step is what models::Train does per step, written out here so each variant runs the same
// loop: a power-iteration step, a fresh batch x ~ prior and y = A x + delta * eta, the loss,
// zero_grad, backward, an Adam step (constant learning rate: the preset's peak; the schedule
// does not change a step's cost). No validation. Every measurement starts from the preset's
// initial network (its seed), takes --warmup_steps untimed steps, then times --steps steps; it
// is repeated --repeats times (the two sides of a comparison alternately) and the best steps/s
// is reported, which is the most robust figure on a shared machine. (A fresh network converges
// faster in the inverse than a trained one; more warm-up steps train it further.)
//
// Section 1: the four losses (models::ComputeLoss, options as the trainer sets them from the
//   preset) on bimodal2d and blur64 with their preset architecture, batch and target space.
// Section 2 (bimodal2d, --comparisons):
//   (a) log-det and divergence with invnet's explicit block Jacobians (models/jacobian.h)
//       against an autograd Jacobian as the Python libraries build it: n backward passes of
//       phi(x) w.r.t. x with create_graph, then slogdet / trace. Before timing, both losses and
//       their parameter gradients are compared on one batch.
//   (b) the reconstruction loss with invnet's adaptive per-sample stopping (tolerance 1e-5)
//       against a fixed-count inverse (tolerance 1e-30, max_iterations --fixed_iterations, so
//       a sample stops only at the cap -- or earlier at an exact float32 fixed point or after
//       the solver's 30-iteration stall window at the rounding floor; the measured iterations
//       are printed). A third row runs a truly fixed count: the Python-style LibTorch loop
//       (libtorch_loop_inverse.h, --fixed_iterations per block on the whole batch) inside the
//       same loss, with the same implicit gradient (exact Jacobian solve, n = 2).

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/optim/adam.h>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "models/blas_setup.h"
#include "models/iresnet.h"
#include "models/jacobian.h"
#include "models/losses.h"
#include "models/operators.h"
#include "models/presets.h"
#include "models/priors.h"
#include "proto/base/status_macros.h"
#include "tests/bench/libtorch_loop_inverse.h"

ABSL_FLAG(int, threads, 2, "LibTorch intra-op threads");
ABSL_FLAG(int64_t, steps, 20, "timed steps per measurement");
ABSL_FLAG(int64_t, warmup_steps, 3, "untimed steps before each measurement");
ABSL_FLAG(int64_t, repeats, 3, "measurements per configuration; the best is reported");
ABSL_FLAG(std::string, presets, "bimodal2d,blur64", "presets of section 1, comma-separated");
ABSL_FLAG(bool, comparisons, true, "run section 2 (bimodal2d side-by-side comparisons)");
ABSL_FLAG(int64_t, fixed_iterations, 60,
          "section 2b: iterations per block of the fixed-count inverse");
ABSL_FLAG(uint64_t, seed, 0, "seed of the batches, noise and probes");

namespace invnet {
namespace {

using Clock = std::chrono::steady_clock;

struct Problem {
  Preset preset;  // architecture, batch size, learning rate, estimator and solver settings
  std::unique_ptr<LinearOperator> op;
  std::unique_ptr<GaussianMixture> prior;
};

absl::StatusOr<Problem> MakeProblem(const std::string& name) {
  Problem p;
  INVNET_ASSIGN_OR_RETURN(p.preset, GetPreset(name, LossKind::kApproximation));
  INVNET_ASSIGN_OR_RETURN(p.op, LinearOperator::Create(p.preset.problem.op));
  INVNET_ASSIGN_OR_RETURN(p.prior, GaussianMixture::Create(*p.preset.problem.prior));
  return p;
}

// The options the trainer builds from a TrainingSpec (trainer.cc), for `kind`.
LossOptions TrainerLossOptions(const Problem& p, LossKind kind) {
  const TrainingSpec& t = p.preset.training;
  const double delta = p.preset.problem.noise_level;
  LossOptions o;
  o.kind = kind;
  o.target_space = DefaultTargetSpace(kind, p.op->output_dim() == p.op->input_dim());
  o.weight = t.loss_weight < 0 ? delta * delta : t.loss_weight;
  o.estimator.exact_max_dim = t.exact_jacobian_max_dim;
  o.estimator.num_probes = t.hutchinson_probes;
  o.estimator.log_det = t.log_det_estimator;
  o.estimator.series_terms = t.log_det_series_terms;
  o.solver.tolerance = t.solver_tolerance;
  o.solver.max_iterations = t.solver_max_iterations;
  return o;
}

struct StepOutcome {
  at::Tensor objective;             // scalar to back-propagate
  double inverse_iterations = NAN;  // reconstruction: mean solver iterations per sample
};
using Objective = std::function<absl::StatusOr<StepOutcome>(
    const IResNet& net, const at::Tensor& x, const at::Tensor& y, at::Generator gen)>;

Objective InvnetLoss(const Problem& p, const LossOptions& options) {
  return [&p, options](const IResNet& net, const at::Tensor& x, const at::Tensor& y,
                       at::Generator gen) -> absl::StatusOr<StepOutcome> {
    INVNET_ASSIGN_OR_RETURN(LossValue loss, ComputeLoss(net, *p.op, x, y, options, gen));
    StepOutcome out;
    out.objective = loss.objective;
    if (options.kind == LossKind::kReconstruction) {
      out.inverse_iterations = loss.inverse_iterations;
    }
    return out;
  };
}

// The Python libraries' way: J_phi(x) row by row with n backward passes (create_graph, so the
// loss can be differentiated again), then slogdet or the trace.
at::Tensor AutogradJacobianObjective(const IResNet& net, const LinearOperator& op,
                                     const at::Tensor& x_in, const at::Tensor& y,
                                     const LossOptions& options) {
  at::Tensor x = x_in.detach().requires_grad_(true);
  at::Tensor out = net.Forward(x);
  std::vector<at::Tensor> rows;
  for (int64_t i = 0; i < net.dim(); ++i) {
    rows.push_back(torch::autograd::grad({out.select(1, i).sum()}, {x}, /*grad_outputs=*/{},
                                         /*retain_graph=*/true, /*create_graph=*/true)[0]);
  }
  at::Tensor jacobian = at::stack(rows, 1);  // [batch, i, j] = d phi_i / d x_j
  at::Tensor regularizer = options.kind == LossKind::kLogDet
                               ? std::get<1>(at::linalg_slogdet(jacobian))
                               : jacobian.diagonal(0, 1, 2).sum(-1);
  at::Tensor target = TargetFor(op, options.target_space, y);
  at::Tensor data = (0.5 * (out - target).pow(2).sum(1)).mean();
  return data - options.weight * regularizer.mean();
}

Objective AutogradLoss(const Problem& p, const LossOptions& options) {
  return [&p, options](const IResNet& net, const at::Tensor& x, const at::Tensor& y,
                       at::Generator) -> absl::StatusOr<StepOutcome> {
    StepOutcome out;
    out.objective = AutogradJacobianObjective(net, *p.op, x, y, options);
    return out;
  };
}

// The reconstruction loss with the inverse replaced by the fixed-count LibTorch loop; the implicit
// gradient is invnet's (losses.cc) for small n: w = J_phi(x_hat)^-T (x_hat - x) / batch,
// objective -w . phi(x_hat) with its value replaced by the loss's.
Objective LoopReconstructionLoss(const Problem& p, const LossOptions& options,
                                 int64_t iterations) {
  return [&p, options, iterations](const IResNet& net, const at::Tensor& x, const at::Tensor& y,
                                   at::Generator) -> absl::StatusOr<StepOutcome> {
    if (net.dim() > options.estimator.exact_max_dim) {
      return absl::UnimplementedError("the loop reconstruction loss needs dim <= exact_max_dim");
    }
    at::Tensor x_hat;
    at::Tensor w;
    StepOutcome out;
    {
      at::NoGradGuard no_grad;
      bench::LibTorchLoopInverse loop(net, iterations);
      x_hat = loop.Inverse(TargetFor(*p.op, options.target_space, y));
      out.inverse_iterations = static_cast<double>(loop.iterations_per_sample());
      at::Tensor jacobian = ExactJacobian(net, x_hat).value;
      at::Tensor g = (x_hat - x) / static_cast<double>(x.size(0));
      w = at::linalg_solve(jacobian.transpose(1, 2), g.unsqueeze(-1)).squeeze(-1);
    }
    at::Tensor surrogate = -(w * net.Forward(x_hat)).sum();
    at::Tensor value = (0.5 * (x_hat - x.detach()).pow(2).sum(1)).mean();
    out.objective = surrogate + (value - surrogate).detach();
    return out;
  };
}

struct Batch {
  at::Tensor x;
  at::Tensor y;
};

Batch DrawBatch(const Problem& p, at::Generator gen) {
  Batch b;
  b.x = p.prior->Sample(p.preset.training.batch_size, gen).to(at::kFloat);
  at::NoGradGuard no_grad;
  at::Tensor clean = p.op->Apply(b.x);
  b.y = clean + p.preset.problem.noise_level * at::randn(clean.sizes(), gen, clean.options());
  return b;
}

struct Measurement {
  double steps_per_second = 0.0;
  double inverse_iterations = NAN;  // mean over the timed steps
};

absl::StatusOr<Measurement> MeasureOnce(const Problem& p, const Objective& objective) {
  INVNET_ASSIGN_OR_RETURN(auto net, IResNet::Create(p.preset.architecture, at::kFloat));
  net->SetTraining(true);
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(absl::GetFlag(FLAGS_seed));
  std::vector<at::Tensor> params = net->Parameters();
  torch::optim::Adam adam(params, torch::optim::AdamOptions(p.preset.training.learning_rate));
  double iterations_sum = 0.0;
  auto step = [&]() -> absl::Status {
    net->PowerIterationStep();
    Batch batch = DrawBatch(p, gen);
    INVNET_ASSIGN_OR_RETURN(StepOutcome outcome, objective(*net, batch.x, batch.y, gen));
    const double value = outcome.objective.item<double>();  // the trainer reads the loss too
    if (!std::isfinite(value)) return absl::InternalError("loss is not finite");
    adam.zero_grad();
    outcome.objective.backward();
    adam.step();
    iterations_sum += outcome.inverse_iterations;
    return absl::OkStatus();
  };
  for (int64_t s = 0; s < absl::GetFlag(FLAGS_warmup_steps); ++s) {
    INVNET_RETURN_IF_ERROR(step());
  }
  iterations_sum = 0.0;
  const int64_t steps = std::max<int64_t>(1, absl::GetFlag(FLAGS_steps));
  const Clock::time_point start = Clock::now();
  for (int64_t s = 0; s < steps; ++s) INVNET_RETURN_IF_ERROR(step());
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  Measurement m;
  m.steps_per_second = steps / seconds;
  m.inverse_iterations = iterations_sum / steps;
  return m;
}

// The best of --repeats measurements of each objective, taken in turn (A B A B ...), so slow
// phases of a shared machine hit every side alike.
absl::StatusOr<std::vector<Measurement>> MeasureBest(const Problem& p,
                                                     const std::vector<Objective>& objectives) {
  std::vector<Measurement> best(objectives.size());
  for (int64_t r = 0; r < std::max<int64_t>(1, absl::GetFlag(FLAGS_repeats)); ++r) {
    for (size_t i = 0; i < objectives.size(); ++i) {
      INVNET_ASSIGN_OR_RETURN(Measurement m, MeasureOnce(p, objectives[i]));
      if (m.steps_per_second > best[i].steps_per_second) best[i] = m;
    }
  }
  return best;
}

// Relative differences between the explicit-Jacobian loss and the autograd one on one batch:
// |loss_a - loss_b| / |loss_a| and max |grad_a - grad_b| / max |grad_a| over all parameters.
absl::Status CompareJacobianLosses(const Problem& p, const LossOptions& options) {
  INVNET_ASSIGN_OR_RETURN(auto net, IResNet::Create(p.preset.architecture, at::kFloat));
  net->SetTraining(true);
  net->PowerIterationStep();
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(absl::GetFlag(FLAGS_seed) + 1);
  Batch batch = DrawBatch(p, gen);
  std::vector<at::Tensor> params = net->Parameters();
  INVNET_ASSIGN_OR_RETURN(LossValue ours, ComputeLoss(*net, *p.op, batch.x, batch.y, options, gen));
  at::Tensor theirs = AutogradJacobianObjective(*net, *p.op, batch.x, batch.y, options);
  std::vector<at::Tensor> grads_ours = torch::autograd::grad({ours.objective}, params);
  std::vector<at::Tensor> grads_theirs = torch::autograd::grad({theirs}, params);
  double grad_scale = 0.0;
  double grad_diff = 0.0;
  for (size_t i = 0; i < params.size(); ++i) {
    grad_scale = std::max(grad_scale, grads_ours[i].abs().max().item<double>());
    grad_diff = std::max(grad_diff, (grads_ours[i] - grads_theirs[i]).abs().max().item<double>());
  }
  const double a = ours.objective.item<double>();
  const double b = theirs.item<double>();
  std::printf("  check (%s, one batch): loss %.6f vs %.6f (rel. diff %.1e), max grad diff / max "
              "grad %.1e\n",
              std::string(LossKindName(options.kind)).c_str(), a, b,
              std::abs(a - b) / std::max(std::abs(a), 1e-30), grad_diff / grad_scale);
  return absl::OkStatus();
}

void PrintMeasurement(const std::string& label, const Measurement& m) {
  const std::string iterations = std::isnan(m.inverse_iterations)
                                     ? std::string("-")
                                     : absl::StrFormat("%.1f", m.inverse_iterations);
  std::printf("  | %-52s | %9.2f | %9s |\n", label.c_str(), m.steps_per_second,
              iterations.c_str());
}

void PrintHeader(const char* first) {
  std::printf("  | %-52s | %9s | %9s |\n", first, "steps/s", "inv iters");
  std::printf("  |%s|%s|%s|\n", std::string(54, '-').c_str(), std::string(11, '-').c_str(),
              std::string(11, '-').c_str());
}

int Fail(const std::string& what, const absl::Status& status) {
  std::fprintf(stderr, "%s: %s\n", what.c_str(), status.ToString().c_str());
  return 1;
}

int Main() {
  at::set_num_threads(absl::GetFlag(FLAGS_threads));
  std::printf("training_bench: LibTorch intra-op threads %d (--threads), machine hardware "
              "threads %u\n",
              at::get_num_threads(), std::thread::hardware_concurrency());
  std::printf("a step = power iteration + batch + loss + backward + Adam (as models::Train, no "
              "validation); from the preset's initial network, %lld warm-up steps, then %lld "
              "timed steps; best of %lld\n",
              static_cast<long long>(absl::GetFlag(FLAGS_warmup_steps)),
              static_cast<long long>(absl::GetFlag(FLAGS_steps)),
              static_cast<long long>(absl::GetFlag(FLAGS_repeats)));
  std::printf("inv iters = mean inverse iterations per sample over all blocks (reconstruction "
              "loss only)\n");

  const std::vector<LossKind> losses = {LossKind::kApproximation, LossKind::kReconstruction,
                                        LossKind::kLogDet, LossKind::kDivergence};
  std::printf("\n== 1. the four losses (models::ComputeLoss) ==\n");
  for (absl::string_view name :
       absl::StrSplit(absl::GetFlag(FLAGS_presets), ',', absl::SkipEmpty())) {
    absl::StatusOr<Problem> p = MakeProblem(std::string(name));
    if (!p.ok()) return Fail(std::string(name), p.status());
    const IResNetConfig& a = p->preset.architecture;
    std::printf("\n%s: %lld-D, %lld blocks x %lld (%lld layers), c = %g; batch %lld\n",
                p->preset.name.c_str(), static_cast<long long>(a.dim),
                static_cast<long long>(a.num_blocks), static_cast<long long>(a.hidden_width),
                static_cast<long long>(a.layers_per_block), a.lipschitz_coeff,
                static_cast<long long>(p->preset.training.batch_size));
    PrintHeader("loss (target space, Jacobian estimator)");
    for (LossKind kind : losses) {
      LossOptions options = TrainerLossOptions(*p, kind);
      std::string label = absl::StrCat(LossKindName(kind), " (",
                                       TargetSpaceName(options.target_space));
      if (kind == LossKind::kLogDet || kind == LossKind::kDivergence) {
        const bool exact = a.dim <= options.estimator.exact_max_dim;
        absl::StrAppend(&label, exact ? ", exact" : (kind == LossKind::kLogDet
                                                         ? ", power series + Hutchinson"
                                                         : ", Hutchinson"));
      }
      absl::StrAppend(&label, ")");
      absl::StatusOr<std::vector<Measurement>> m = MeasureBest(*p, {InvnetLoss(*p, options)});
      if (!m.ok()) return Fail(label, m.status());
      PrintMeasurement(label, (*m)[0]);
      std::fflush(stdout);
    }
  }

  if (!absl::GetFlag(FLAGS_comparisons)) return 0;
  absl::StatusOr<Problem> p = MakeProblem("bimodal2d");
  if (!p.ok()) return Fail("bimodal2d", p.status());

  std::printf("\n== 2a. bimodal2d: explicit block Jacobians (invnet) vs autograd Jacobian "
              "(n backward passes with create_graph) ==\n");
  for (LossKind kind : {LossKind::kLogDet, LossKind::kDivergence}) {
    LossOptions options = TrainerLossOptions(*p, kind);
    absl::Status checked = CompareJacobianLosses(*p, options);
    if (!checked.ok()) return Fail("comparison", checked);
  }
  PrintHeader("loss, Jacobian");
  for (LossKind kind : {LossKind::kLogDet, LossKind::kDivergence}) {
    LossOptions options = TrainerLossOptions(*p, kind);
    const std::string name(LossKindName(kind));
    absl::StatusOr<std::vector<Measurement>> m =
        MeasureBest(*p, {InvnetLoss(*p, options), AutogradLoss(*p, options)});
    if (!m.ok()) return Fail(name, m.status());
    PrintMeasurement(name + ", explicit (invnet)", (*m)[0]);
    PrintMeasurement(name + ", autograd (reference)", (*m)[1]);
    std::printf("  | %-52s | %8.2fx | %9s |\n", (name + ": explicit / autograd").c_str(),
                (*m)[0].steps_per_second / (*m)[1].steps_per_second, "");
    std::fflush(stdout);
  }

  const int64_t fixed = absl::GetFlag(FLAGS_fixed_iterations);
  std::printf("\n== 2b. bimodal2d reconstruction loss: adaptive per-sample stopping vs a "
              "fixed %lld iterations per block ==\n",
              static_cast<long long>(fixed));
  LossOptions adaptive = TrainerLossOptions(*p, LossKind::kReconstruction);
  adaptive.solver.tolerance = 1e-5;
  LossOptions capped = adaptive;
  capped.solver.tolerance = 1e-30;
  capped.solver.max_iterations = fixed;
  PrintHeader("reconstruction inverse");
  absl::StatusOr<std::vector<Measurement>> m =
      MeasureBest(*p, {InvnetLoss(*p, adaptive), InvnetLoss(*p, capped),
                       LoopReconstructionLoss(*p, adaptive, fixed)});
  if (!m.ok()) return Fail("reconstruction", m.status());
  PrintMeasurement(absl::StrCat("invnet solver, adaptive, tolerance 1e-5 (cap ",
                                adaptive.solver.max_iterations, ")"),
                   (*m)[0]);
  PrintMeasurement(absl::StrCat("invnet solver, fixed: cap ", fixed, ", tolerance 1e-30"),
                   (*m)[1]);
  PrintMeasurement(absl::StrCat("LibTorch loop, ", fixed, " per block (Python-style)"), (*m)[2]);
  std::printf("  | %-52s | %8.2fx | %9s |\n", "adaptive / fixed (invnet solver)",
              (*m)[0].steps_per_second / (*m)[1].steps_per_second, "");
  std::printf("  | %-52s | %8.2fx | %9s |\n", "adaptive / LibTorch loop",
              (*m)[0].steps_per_second / (*m)[2].steps_per_second, "");
  return 0;
}

}  // namespace
}  // namespace invnet

int main(int argc, char** argv) {
  std::printf("%s\n", invnet::EnsureOptimizedBlas(argv).c_str());
  absl::ParseCommandLine(argc, argv);
  return invnet::Main();
}
