// Reproduces the table of models/README.md section 5 in process: trains one network per loss on a
// preset, evaluates every inverse and the exact Bayesian references on the same held-out pairs,
// prints the table and checks the acceptance bounds of the training issue. With --family it is
// the family study of issue 12: every loss on every member of a random problem family
// (models/problem_family.h), then per loss the mean, worst and standard error over the members
// of the MSE ratio to the exact posterior mean and of the RMS distance to the exact MAP.
//
//   build/tests/bench/reproduce_paper --preset=bimodal2d            (four losses, 20,000 pairs)
//   build/tests/bench/reproduce_paper --preset=blur64               (5,000 pairs)
//   build/tests/bench/reproduce_paper --family=random2d --seeds=1000-1009   (the study)
//   build/tests/bench/reproduce_paper --family=random2d --seeds=0-19 ...    (tuning: seeds 0-19)
//   options: --steps=N (override the schedule) --threads=2 --save_dir=DIR (keep checkpoints)
//
// Tuning uses seeds 0-19 only; the study's seeds 1000-1009 are never tuned on.
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "models/blas_setup.h"
#include "models/checkpoint.h"
#include "models/estimators.h"
#include "models/evaluation.h"
#include "models/posterior_spread.h"
#include "models/presets.h"
#include "models/priors.h"
#include "models/problem_family.h"
#include "models/seeds.h"
#include "models/trainer.h"
#include "proto/base/status_macros.h"

ABSL_FLAG(std::string, preset, "bimodal2d", "bimodal2d, blur64 or a family member (random2d-3)");
ABSL_FLAG(std::string, family, "", "run the family study on this family (random2d, random8)");
ABSL_FLAG(std::string, seeds, "1000-1009", "--family: the members, FIRST-LAST or one seed");
ABSL_FLAG(int64_t, steps, 0, "training steps per loss (0: the preset's)");
ABSL_FLAG(int64_t, test_pairs, 0,
          "held-out pairs (0: 20000 for bimodal2d, 5000 otherwise, 2000 per family member)");
ABSL_FLAG(int, threads, 2, "LibTorch intra-op threads");
ABSL_FLAG(int, parallel, 1, "--family: members trained at once (use with --threads=1)");
ABSL_FLAG(std::string, save_dir, "", "directory to save each trained checkpoint in");
ABSL_FLAG(uint64_t, seed, 0, "training seed");
ABSL_FLAG(std::string, only, "", "train only the runs whose label contains this text");
ABSL_FLAG(int64_t, layers_per_block, 0, "override the preset's layers per block (0: keep)");
ABSL_FLAG(int64_t, hidden_width, 0, "override the preset's hidden width (0: keep)");
ABSL_FLAG(int64_t, num_blocks, 0, "override the preset's number of blocks (0: keep)");
ABSL_FLAG(double, learning_rate, 0, "override the preset's learning rate (0: keep)");
ABSL_FLAG(std::string, schedule, "", "override the learning-rate schedule: cosine or constant");
ABSL_FLAG(int64_t, batch_size, 0, "override the preset's batch size (0: keep)");
ABSL_FLAG(double, lipschitz_coeff, 0, "override the block Lipschitz bound c (0: keep)");
ABSL_FLAG(std::string, lipschitz_split, "", "override the split: geometric, last_layer, ...");
ABSL_FLAG(double, alpha_scale, 0, "train with loss_weight = this x delta^2 (0: the default)");
ABSL_FLAG(bool, diagnose, false,
          "after each divergence network (normal space), print its fit to the loss's exact "
          "minimiser A^T A x - alpha grad log p(x) and the spread of its distance to the MAP");

namespace invnet {
namespace {

struct Run {
  std::string label;
  LossKind loss;
  TargetSpace space;
};

struct Row {
  std::string label;
  EvaluationMetrics metrics;
  double train_seconds = NAN;
};

void PrintRow(const Row& r) {
  // %8.4g keeps the columns aligned for the pseudo-inverse's 1e14 of an ill-conditioned A.
  std::printf("| %-38s | %8.4g | %6.4g | %7.4g | %7.4g | %8.4g | %5.3f | %7.1f | %7.1f |",
              r.label.c_str(), r.metrics.mse, r.metrics.mse_ratio_to_pm, r.metrics.rms_to_pm,
              r.metrics.rms_to_map, r.metrics.forward_error, r.metrics.converged_fraction,
              r.metrics.mean_iterations, r.train_seconds);
  if (std::isnan(r.metrics.std_ratio_median)) {
    std::printf(" %-21s |\n", "");
  } else {
    std::printf(" %5.3f [%5.3f, %5.3f] |\n", r.metrics.std_ratio_median, r.metrics.std_ratio_q10,
                r.metrics.std_ratio_q90);
  }
}

absl::Mutex print_mu;

// Under print_mu: members trained concurrently print whole tables.
void PrintTable(const std::string& title, const std::vector<Row>& rows, int64_t pairs) {
  absl::MutexLock lock(&print_mu);
  std::printf("\n%s", title.c_str());
  std::printf(
      "\n%lld held-out pairs; mse = mean ||x_hat - x||^2; forward = RMS ||phi(x) - "
      "target(x)||; threads %d\n\n",
      static_cast<long long>(pairs), at::get_num_threads());
  std::printf("| %-38s | %8s | %6s | %7s | %7s | %8s | %5s | %7s | %7s | %-21s |\n", "estimator",
              "MSE", "x PM", "to PM", "to MAP", "forward", "conv", "iters", "train s",
              "std / exact [10, 90%]");
  std::printf(
      "|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|\n", std::string(40, '-').c_str(),
      std::string(10, '-').c_str(), std::string(8, '-').c_str(), std::string(9, '-').c_str(),
      std::string(9, '-').c_str(), std::string(10, '-').c_str(), std::string(7, '-').c_str(),
      std::string(9, '-').c_str(), std::string(9, '-').c_str(), std::string(23, '-').c_str());
  for (const Row& r : rows) PrintRow(r);
  std::fflush(stdout);
}

bool Check(const char* what, bool ok) {
  std::printf("  [%s] %s\n", ok ? "PASS" : "FAIL", what);
  return ok;
}

// The command line's overrides of a preset's architecture and schedule.
absl::Status ApplyOverrides(TrainingRequest& request) {
  request.training.seed = absl::GetFlag(FLAGS_seed);
  if (absl::GetFlag(FLAGS_steps) > 0) request.training.steps = absl::GetFlag(FLAGS_steps);
  if (absl::GetFlag(FLAGS_layers_per_block) > 0) {
    request.architecture.layers_per_block = absl::GetFlag(FLAGS_layers_per_block);
  }
  if (absl::GetFlag(FLAGS_hidden_width) > 0) {
    request.architecture.hidden_width = absl::GetFlag(FLAGS_hidden_width);
  }
  if (absl::GetFlag(FLAGS_num_blocks) > 0) {
    request.architecture.num_blocks = absl::GetFlag(FLAGS_num_blocks);
  }
  if (absl::GetFlag(FLAGS_learning_rate) > 0) {
    request.training.learning_rate = absl::GetFlag(FLAGS_learning_rate);
  }
  if (!absl::GetFlag(FLAGS_schedule).empty()) {
    request.training.cosine_decay = absl::GetFlag(FLAGS_schedule) == "cosine";
  }
  if (absl::GetFlag(FLAGS_batch_size) > 0) {
    request.training.batch_size = absl::GetFlag(FLAGS_batch_size);
  }
  if (absl::GetFlag(FLAGS_lipschitz_coeff) > 0) {
    request.architecture.lipschitz_coeff = absl::GetFlag(FLAGS_lipschitz_coeff);
  }
  if (!absl::GetFlag(FLAGS_lipschitz_split).empty()) {
    INVNET_ASSIGN_OR_RETURN(request.architecture.lipschitz_split,
                            ParseLipschitzSplit(absl::GetFlag(FLAGS_lipschitz_split)));
  }
  if (absl::GetFlag(FLAGS_alpha_scale) > 0) {
    const double delta = request.problem.noise_level;
    request.training.loss_weight = absl::GetFlag(FLAGS_alpha_scale) * delta * delta;
  }
  return absl::OkStatus();
}

std::string Quantiles(const at::Tensor& v) {
  if (v.numel() == 0) return "-";
  at::Tensor sorted = std::get<0>(v.to(at::kDouble).sort());
  auto at_q = [&](double q) {
    return sorted[static_cast<int64_t>(q * (sorted.size(0) - 1))].item<double>();
  };
  return absl::StrFormat("median %.4f, 90%% %.4f, 99%% %.4f, max %.4f", at_q(0.5), at_q(0.9),
                         at_q(0.99), at_q(1.0));
}

// Where a divergence network (normal space) stands against the minimiser of its loss,
// phi*(x) = A^T A x - alpha grad log p(x) (models/README.md section 3), whose inverse at A^T y is
// the MAP's optimality condition: the fit on prior samples (where training sees data) and at the
// exact MAPs (where the inverse is evaluated), against the size of the prior's term, and how the
// distance to the MAP spreads over the samples (a few far-off samples, or all of them a little).
absl::Status DiagnoseDivergence(const FrozenIResNet& network, const LinearOperator& op,
                                const GaussianMixture& prior, double alpha, const TestSet& test,
                                const InverseOptions& solver) {
  at::NoGradGuard no_grad;
  auto ideal = [&](const at::Tensor& x) {
    return op.Adjoint(op.Apply(x)) - alpha * prior.Score(x);
  };
  auto rms_rows = [](const at::Tensor& d) { return d.pow(2).sum(1).sqrt(); };
  INVNET_ASSIGN_OR_RETURN(at::Tensor phi_x, network.Forward(test.x));
  INVNET_ASSIGN_OR_RETURN(at::Tensor phi_map, network.Forward(test.map));
  at::Tensor target = op.Adjoint(test.y);
  INVNET_ASSIGN_OR_RETURN(InverseResult inverse, network.Inverse(target.to(at::kFloat), solver));
  at::Tensor to_map = rms_rows(inverse.x.to(at::kDouble) - test.map);
  std::printf("  diagnose: ||alpha grad log p(x)|| on prior samples: %s\n",
              Quantiles(rms_rows(alpha * prior.Score(test.x))).c_str());
  std::printf("  diagnose: ||phi(x) - phi*(x)|| on prior samples:     %s\n",
              Quantiles(rms_rows(phi_x - ideal(test.x))).c_str());
  std::printf("  diagnose: ||phi(x) - phi*(x)|| at the exact MAPs:    %s\n",
              Quantiles(rms_rows(phi_map - ideal(test.map))).c_str());
  std::printf("  diagnose: ||phi*(x_MAP) - A^T y|| (MAP's optimality): %s\n",
              Quantiles(rms_rows(ideal(test.map) - target)).c_str());
  std::printf("  diagnose: ||phi^-1(A^T y) - x_MAP||:                 %s\n",
              Quantiles(to_map).c_str());
  // The samples farthest from the MAP against the rest: is the prior dense at their MAPs, does
  // the network fit phi* there, and is phi*'s Jacobian A^T A - alpha Hess log p (symmetric)
  // positive definite there, i.e. is the posterior locally convex?
  at::Tensor far = to_map > 0.3;
  at::Tensor near = far.logical_not();
  at::Tensor fit_map = rms_rows(phi_map - ideal(test.map));
  at::Tensor ata = op.Adjoint(op.Apply(at::eye(test.map.size(1), at::kDouble))).transpose(0, 1);
  at::Tensor ideal_jacobian = ata.unsqueeze(0) - alpha * prior.LogDensityHessian(test.map);
  at::Tensor min_eigenvalue = std::get<0>(at::linalg_eigh(ideal_jacobian)).select(1, 0);
  // Where the far samples' inverses land: a second critical point of the posterior (phi* is
  // A^T y there too, so phi*, not injective, is not an iResNet's map) or a bad fit?
  at::Tensor x_hat = inverse.x.to(at::kDouble);
  auto neg_log_posterior = [&](const at::Tensor& x) {
    return 0.5 * (op.Apply(x) - test.y).pow(2).sum(1) / (alpha)-prior.LogDensity(x);
  };
  at::Tensor hat_jacobian = ata.unsqueeze(0) - alpha * prior.LogDensityHessian(x_hat);
  std::printf("  diagnose: far samples' x_hat: ||phi*(x_hat) - A^T y|| %s\n",
              Quantiles(rms_rows(ideal(x_hat) - target).masked_select(far)).c_str());
  std::printf("    log p(x_hat): %s (prior samples: %s)\n",
              Quantiles(prior.LogDensity(x_hat).masked_select(far)).c_str(),
              Quantiles(prior.LogDensity(test.x)).c_str());
  std::printf("    min eig of J_phi*(x_hat): %s\n",
              Quantiles(std::get<0>(at::linalg_eigh(hat_jacobian)).select(1, 0).masked_select(far))
                  .c_str());
  std::printf("    -log posterior(x_hat) - (-log posterior(x_MAP)) (alpha = delta^2): %s\n",
              Quantiles((neg_log_posterior(x_hat) - neg_log_posterior(test.map)).masked_select(far))
                  .c_str());
  std::printf("  diagnose: %.1f%% of samples are > 0.3 from the MAP\n",
              100.0 * far.to(at::kDouble).mean().item<double>());
  for (const auto& [name, mask] : {std::pair<const char*, at::Tensor>{"far", far},
                                   std::pair<const char*, at::Tensor>{"near", near}}) {
    std::printf("    %-4s log p(x_MAP): %s\n", name,
                Quantiles(prior.LogDensity(test.map).masked_select(mask)).c_str());
    std::printf("    %-4s ||phi - phi*|| at x_MAP: %s\n", name,
                Quantiles(fit_map.masked_select(mask)).c_str());
    std::printf("    %-4s min eig of J_phi*(x_MAP): %s\n", name,
                Quantiles(min_eigenvalue.masked_select(mask)).c_str());
  }
  std::fflush(stdout);
  return absl::OkStatus();
}

// The exact references on `pairs` test pairs of `preset_name`, then one network per run, in
// rows: the four references first, then the runs in order.
absl::StatusOr<std::vector<Row>> RunProblem(const std::string& preset_name,
                                            const std::vector<Run>& runs, int64_t pairs,
                                            bool verbose) {
  INVNET_ASSIGN_OR_RETURN(Preset base, GetPreset(preset_name, LossKind::kApproximation));
  INVNET_ASSIGN_OR_RETURN(auto op, LinearOperator::Create(base.problem.op));
  INVNET_ASSIGN_OR_RETURN(auto prior, GaussianMixture::Create(*base.problem.prior));
  const double delta = base.problem.noise_level;
  INVNET_ASSIGN_OR_RETURN(auto references, BayesEstimators::Create(*op, *prior, delta));

  std::printf("preset %s: %s\n", preset_name.c_str(), base.description.c_str());
  std::printf("drawing %lld test pairs and their exact PM and MAP...\n",
              static_cast<long long>(pairs));
  auto t0 = std::chrono::steady_clock::now();
  // The test draws' own stream: never the training's or the validation's (models/seeds.h).
  TestSet test =
      DrawTestSet(*prior, *op, delta, pairs,
                  at::make_generator<at::CPUGeneratorImpl>(StreamSeed(12345, SeedStream::kTest)),
                  references.get());
  std::printf("  references took %.1f s\n",
              std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());

  std::vector<Row> rows;
  rows.push_back({"exact posterior mean", EvaluateEstimate(test.pm, test)});
  rows.push_back({"exact MAP", EvaluateEstimate(test.map, test)});
  rows.push_back({"Wiener (LMMSE)", EvaluateEstimate(references->Wiener(test.y), test)});
  rows.push_back(
      {"pseudo-inverse A^+ y", EvaluateEstimate(references->PseudoInverse(test.y), test)});

  InverseOptions solver;
  solver.tolerance = 1e-5;
  solver.max_iterations = 5000;
  for (const Run& run : runs) {
    if (run.label.find(absl::GetFlag(FLAGS_only)) == std::string::npos) {
      rows.push_back({run.label + " (skipped)", EvaluationMetrics()});
      continue;
    }
    INVNET_ASSIGN_OR_RETURN(Preset preset, GetPreset(preset_name, run.loss));
    TrainingRequest request;
    request.problem = preset.problem;
    request.architecture = preset.architecture;
    request.training = preset.training;
    request.training.target_space = run.space;
    INVNET_RETURN_IF_ERROR(ApplyOverrides(request));
    std::printf("training %s (%lld steps)...\n", run.label.c_str(),
                static_cast<long long>(request.training.steps));
    std::fflush(stdout);
    TrainerCallbacks callbacks;
    if (verbose) {
      callbacks.on_progress = [](const TrainingProgress& p) {
        if (p.validation.has_value()) {
          std::printf("  step %6lld  loss %9.5f  val mse %.4f  forward %.4f  (%.0f s)\n",
                      static_cast<long long>(p.step), p.loss, p.validation->mse,
                      p.validation->forward_error, p.elapsed_seconds);
          std::fflush(stdout);
        }
      };
    }
    INVNET_ASSIGN_OR_RETURN(Checkpoint ck, Train(request, callbacks));
    if (!absl::GetFlag(FLAGS_save_dir).empty()) {
      std::string path =
          absl::StrCat(absl::GetFlag(FLAGS_save_dir), "/", preset_name, "-", LossKindName(run.loss),
                       "-", TargetSpaceName(run.space), ".ckpt");
      auto saved = SaveCheckpoint(ck, path);
      if (!saved.ok()) std::fprintf(stderr, "%s\n", saved.ToString().c_str());
    }
    INVNET_ASSIGN_OR_RETURN(auto net, RestoreNetwork(ck));
    INVNET_ASSIGN_OR_RETURN(auto frozen, FrozenIResNet::Create(*net));
    // The network's own posterior std where its loss defines one (posterior_spread.h).
    PosteriorSpreadSetup spread;
    spread.loss = ck.training.loss;
    spread.target_space = run.space;
    spread.loss_weight = ck.training.loss_weight;
    spread.noise_level = delta;
    const bool has_spread = PosteriorSpreadMethodFor(spread, *op).ok();
    INVNET_ASSIGN_OR_RETURN(
        EvaluationMetrics metrics,
        EvaluateNetwork(*frozen, *op, run.space, test, solver, has_spread ? &spread : nullptr));
    rows.push_back({run.label, metrics, ck.metrics.at("train_seconds")});
    if (absl::GetFlag(FLAGS_diagnose) && run.loss == LossKind::kDivergence &&
        run.space == TargetSpace::kNormal) {
      INVNET_RETURN_IF_ERROR(
          DiagnoseDivergence(*frozen, *op, *prior, ck.training.loss_weight, test, solver));
    }
  }
  PrintTable(absl::StrCat("preset ", preset_name, ": ", base.description, "\n"), rows, pairs);
  return rows;
}

// The four losses, each in its default target space for a square operator.
std::vector<Run> DefaultRuns() {
  std::vector<Run> runs;
  for (LossKind loss : {LossKind::kApproximation, LossKind::kLogDet, LossKind::kDivergence,
                        LossKind::kReconstruction}) {
    runs.push_back({std::string(LossKindName(loss)), loss, DefaultTargetSpace(loss, true)});
  }
  return runs;
}

struct Summary {
  double mean = NAN, worst = NAN, standard_error = NAN;
};
Summary Summarize(const std::vector<double>& values) {
  Summary s;
  if (values.empty()) return s;
  double sum = 0, worst = -INFINITY;
  for (double v : values) {
    sum += v;
    worst = std::max(worst, v);
  }
  s.mean = sum / values.size();
  s.worst = worst;
  if (values.size() > 1) {
    double ss = 0;
    for (double v : values) ss += (v - s.mean) * (v - s.mean);
    s.standard_error = std::sqrt(ss / (values.size() - 1) / values.size());
  }
  return s;
}

int FamilyStudy(const std::string& family) {
  uint64_t first = 0, last = 0;
  const std::string seeds = absl::GetFlag(FLAGS_seeds);
  const size_t dash = seeds.find('-');
  if (!absl::SimpleAtoi(seeds.substr(0, dash), &first) ||
      !absl::SimpleAtoi(dash == std::string::npos ? seeds : seeds.substr(dash + 1), &last) ||
      last < first) {
    std::fprintf(stderr, "--seeds: '%s' is not FIRST-LAST or one seed\n", seeds.c_str());
    return 2;
  }
  const int64_t pairs =
      absl::GetFlag(FLAGS_test_pairs) > 0 ? absl::GetFlag(FLAGS_test_pairs) : 2000;
  const std::vector<Run> runs = DefaultRuns();
  // Rows of RunProblem: PM, MAP, Wiener, A^+ y, then the runs. Summarised: the exact MAP and
  // A^+ y (for scale: a MAP-like network cannot beat the MAP's ratio by much), then the runs.
  std::vector<size_t> summarised = {1, 3};
  std::vector<std::string> labels = {"exact MAP", "pseudo-inverse A^+ y"};
  for (size_t i = 0; i < runs.size(); ++i) {
    summarised.push_back(4 + i);
    labels.push_back(runs[i].label);
  }
  std::vector<std::vector<double>> ratios(labels.size()), to_map(labels.size());
  // The networks' own posterior std over the exact one: each member's median and quantiles.
  std::vector<std::vector<double>> std_median(labels.size()), std_q10(labels.size()),
      std_q90(labels.size());
  // Members train concurrently, `parallel` at a time, each on its own LibTorch thread(s).
  const uint64_t count = last - first + 1;
  std::vector<absl::StatusOr<std::vector<Row>>> results(count, absl::UnknownError("not run"));
  std::atomic<uint64_t> next{0};
  std::vector<std::thread> workers;
  for (int w = 0; w < std::max(1, absl::GetFlag(FLAGS_parallel)); ++w) {
    workers.emplace_back([&] {
      for (uint64_t i = next++; i < count; i = next++) {
        results[i] = RunProblem(FamilyMemberName(family, first + i), runs, pairs, false);
      }
    });
  }
  for (std::thread& worker : workers) worker.join();
  std::vector<std::string> members;
  for (uint64_t i = 0; i < count; ++i) {
    const std::string name = FamilyMemberName(family, first + i);
    if (!results[i].ok()) {
      std::fprintf(stderr, "%s: %s\n", name.c_str(), results[i].status().ToString().c_str());
      return 1;
    }
    members.push_back(name);
    for (size_t j = 0; j < labels.size(); ++j) {
      const Row& row = (*results[i])[summarised[j]];
      if (std::isnan(row.metrics.mse)) continue;  // skipped with --only
      ratios[j].push_back(row.metrics.mse_ratio_to_pm);
      to_map[j].push_back(row.metrics.rms_to_map);
      if (!std::isnan(row.metrics.std_ratio_median)) {
        std_median[j].push_back(row.metrics.std_ratio_median);
        std_q10[j].push_back(row.metrics.std_ratio_q10);
        std_q90[j].push_back(row.metrics.std_ratio_q90);
      }
    }
  }
  std::printf("\nfamily %s, members %s (%zu), %lld test pairs each, training seed %llu\n\n",
              family.c_str(), seeds.c_str(), members.size(), static_cast<long long>(pairs),
              static_cast<unsigned long long>(absl::GetFlag(FLAGS_seed)));
  std::printf("| %-22s | %-17s | %6s | %-17s | %6s |\n", "estimator", "MSE x PM: mean +- SE",
              "worst", "RMS to MAP: mean +- SE", "worst");
  std::printf(
      "|------------------------|-------------------|--------|------------------------|--------|"
      "\n");
  std::vector<Summary> ratio_summary(labels.size());
  for (size_t i = 0; i < labels.size(); ++i) {
    ratio_summary[i] = Summarize(ratios[i]);
    Summary m = Summarize(to_map[i]);
    std::printf("| %-22s | %7.4f +- %6.4f | %6.4f | %8.4f +- %9.4f | %6.4f |\n", labels[i].c_str(),
                ratio_summary[i].mean, ratio_summary[i].standard_error, ratio_summary[i].worst,
                m.mean, m.standard_error, m.worst);
  }
  std::printf(
      "\nthe network's posterior std / the exact one (per sample and coordinate; over the "
      "members: the medians' mean +- SE, their range, and the mean 10%% and 90%% "
      "quantiles)\n\n");
  std::printf("| %-22s | %-17s | %-13s | %-15s |\n", "network", "median: mean +- SE",
              "median range", "10% / 90%");
  std::printf("|------------------------|-------------------|---------------|-----------------|\n");
  for (size_t i = 0; i < labels.size(); ++i) {
    if (std_median[i].empty()) continue;
    const Summary median = Summarize(std_median[i]);
    const double lowest = *std::min_element(std_median[i].begin(), std_median[i].end());
    std::printf("| %-22s | %7.4f +- %6.4f | %5.3f - %5.3f | %6.3f / %6.3f |\n", labels[i].c_str(),
                median.mean, median.standard_error, lowest, median.worst,
                Summarize(std_q10[i]).mean, Summarize(std_q90[i]).mean);
  }
  std::printf("\ntargets (issue 12, with the defaults):\n");
  bool ok = true;
  auto of = [&](LossKind loss) -> const Summary& {
    for (size_t i = 0; i < runs.size(); ++i) {
      if (runs[i].loss == loss) return ratio_summary[2 + i];
    }
    return ratio_summary[0];
  };
  ok &= Check("divergence MSE <= 1.05x PM on average", of(LossKind::kDivergence).mean <= 1.05);
  ok &= Check("divergence MSE <= 1.10x PM at worst", of(LossKind::kDivergence).worst <= 1.10);
  ok &= Check("log-det MSE <= 1.08x PM on average", of(LossKind::kLogDet).mean <= 1.08);
  ok &= Check("reconstruction MSE <= 1.03x PM on average",
              of(LossKind::kReconstruction).mean <= 1.03);
  ok &= Check("approximation within 5% of A^-1 y's MSE on average",
              std::abs(of(LossKind::kApproximation).mean / ratio_summary[1].mean - 1) <= 0.05);
  std::printf("%s\n", ok ? "all targets met" : "SOME TARGETS MISSED");
  return ok ? 0 : 1;
}

int Main() {
  at::set_num_threads(absl::GetFlag(FLAGS_threads));
  if (!absl::GetFlag(FLAGS_family).empty()) return FamilyStudy(absl::GetFlag(FLAGS_family));
  const std::string preset_name = absl::GetFlag(FLAGS_preset);
  const bool bimodal = preset_name == "bimodal2d";
  const bool blur = preset_name == "blur64";
  const int64_t pairs = absl::GetFlag(FLAGS_test_pairs) > 0 ? absl::GetFlag(FLAGS_test_pairs)
                                                            : (bimodal ? 20000 : 5000);
  std::vector<Run> runs = DefaultRuns();
  if (blur) {
    runs = {{"approximation, target y", LossKind::kApproximation, TargetSpace::kMeasurement},
            {"approximation, target A^T y", LossKind::kApproximation, TargetSpace::kNormal},
            {"divergence regularised (A^T y)", LossKind::kDivergence, TargetSpace::kNormal},
            {"log-det regularised (A^T y)", LossKind::kLogDet, TargetSpace::kNormal}};
  }
  absl::StatusOr<std::vector<Row>> rows_or = RunProblem(preset_name, runs, pairs, true);
  if (!rows_or.ok()) {
    std::fprintf(stderr, "%s\n", rows_or.status().ToString().c_str());
    return 1;
  }
  const std::vector<Row>& rows = *rows_or;
  if (!bimodal && !blur) return 0;

  std::printf("\nacceptance (training issue):\n");
  bool ok = true;
  auto ratio = [&](size_t i) { return rows[i].metrics.mse_ratio_to_pm; };
  if (bimodal) {
    ok &= Check("approximation MSE >= 2x PM", ratio(4) >= 2.0);
    ok &= Check("log-det MSE <= 1.15x PM", ratio(5) <= 1.15);
    ok &= Check("divergence MSE <= 1.03x PM", ratio(6) <= 1.03);
    ok &= Check("reconstruction MSE <= 1.03x PM", ratio(7) <= 1.03);
    ok &=
        Check("divergence inverse within 0.06 RMS of the MAP", rows[6].metrics.rms_to_map <= 0.06);
    ok &= Check("log-det forward error < 0.7x reconstruction's",
                rows[5].metrics.forward_error < 0.7 * rows[7].metrics.forward_error);
    ok &= Check("divergence forward error < 0.7x reconstruction's",
                rows[6].metrics.forward_error < 0.7 * rows[7].metrics.forward_error);
  } else {
    ok &= Check("divergence MSE <= 1.10x PM", ratio(6) <= 1.10);
    ok &= Check("approximation (target y) MSE >= 1.5x PM", ratio(4) >= 1.5);
    ok &= Check("approximation (target A^T y) MSE >= 1.5x PM", ratio(5) >= 1.5);
  }
  std::printf("%s\n", ok ? "all acceptance checks passed" : "SOME ACCEPTANCE CHECKS FAILED");
  return ok ? 0 : 1;
}

}  // namespace
}  // namespace invnet

int main(int argc, char** argv) {
  std::printf("%s\n", invnet::EnsureOptimizedBlas(argv).c_str());
  absl::ParseCommandLine(argc, argv);
  return invnet::Main();
}
