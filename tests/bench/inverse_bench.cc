// The inverse engine benchmark: invnet's FrozenIResNet::Inverse against the straightforward
// LibTorch fixed-point loop the common Python iResNet libraries use, on the same networks and
// inputs, in one process. Prints samples/s of each, their ratio, and each one's accuracy.
//
//   build/tests/bench/inverse_bench [--bimodal2d=PATH] [--blur64=PATH] [--save_dir=DIR]
//       [--threads=2] [--max_batch=100000] [--min_seconds=1] [--blur64_steps=600]
//
// Engines, per configuration (network, batch):
//   baseline  for each block in reverse order: u = v, then a fixed --baseline_iterations (50)
//             of u = v - g(u) on the whole batch, g evaluated with LibTorch ops (at::addmm with
//             the transposed weight, as F.linear does, and the activation: at::elu) on the
//             network's effective weights (IResNet::EffectiveWeights()); no per-sample stopping.
//   invnet    FrozenIResNet::Inverse, default options (tolerance 1e-5, no Anderson), float32.
// Accuracy: max over the batch of ||x - x_ref||, x_ref the float64 solve of the same (float32)
// inputs by FrozenIResNet::Inverse with tolerance 1e-10 (its per-sample error bound is printed).
// Timing: each call is repeated until --min_seconds have passed (after one untimed warm-up call,
// unless the first call alone took that long); the mean per call is reported.
//
// Networks: bimodal2d and blur64 trained with the divergence loss, from checkpoints (--bimodal2d,
// --blur64) or trained here first with models::Train on the preset (blur64 with --blur64_steps
// steps instead of the preset's 3000, to keep the set-up short; --save_dir keeps what was
// trained). Inputs are realistic measurements: x from the preset's prior, y = phi(x) + the
// measurement noise as it reaches the network (delta * eta, mapped by A^T for networks trained
// in normal-equation space). A second section (--saturated, on by default) runs the earlier
// version's networks: the same shapes with every layer at sigma = c, on Gaussian inputs.
// Batches 1, 1,000 and 100,000 (64-D saturated: 1 and 1,000); --max_batch caps every section,
// and the configurations it skips are listed. (The baseline on blur64 at 100,000 takes minutes.)

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "models/activation.h"
#include "models/blas_setup.h"
#include "models/checkpoint.h"
#include "models/inverse.h"
#include "models/iresnet.h"
#include "models/losses.h"
#include "models/operators.h"
#include "models/presets.h"
#include "models/priors.h"
#include "models/trainer.h"
#include "tests/bench/libtorch_loop_inverse.h"
#include "tests/testing/networks.h"

ABSL_FLAG(int, threads, 2, "LibTorch intra-op threads");
ABSL_FLAG(std::string, bimodal2d, "",
          "checkpoint of a bimodal2d network (empty: train one here with the divergence loss)");
ABSL_FLAG(std::string, blur64, "",
          "checkpoint of a blur64 network (empty: train one here with the divergence loss)");
ABSL_FLAG(int64_t, bimodal2d_steps, 0,
          "training steps when bimodal2d is trained here (0: the preset's 3000)");
ABSL_FLAG(int64_t, blur64_steps, 600,
          "training steps when blur64 is trained here (0: the preset's 3000)");
ABSL_FLAG(std::string, save_dir, "", "directory to save the networks trained here in");
ABSL_FLAG(int64_t, max_batch, 100000, "skip configurations with a larger batch");
ABSL_FLAG(double, min_seconds, 1.0, "minimum measured time per engine and configuration");
ABSL_FLAG(int64_t, baseline_iterations, 50, "fixed iterations per block of the baseline");
ABSL_FLAG(double, tolerance, 1e-5, "invnet solver tolerance (absolute, per block)");
ABSL_FLAG(bool, anderson, true, "invnet: Anderson acceleration");
ABSL_FLAG(double, reference_tolerance, 1e-10, "tolerance of the float64 reference solve");
ABSL_FLAG(bool, saturated, true, "also run the saturated (sigma = c) networks");
ABSL_FLAG(uint64_t, seed, 1, "seed of the benchmark inputs");

namespace invnet {
namespace {

using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

using bench::LibTorchLoopInverse;

struct BenchNetwork {
  std::string name;
  std::string description;  // provenance and inputs
  std::unique_ptr<IResNet> net;  // evaluation mode
  std::shared_ptr<const FrozenIResNet> frozen;
  at::Tensor inputs;  // [largest batch, n] float32; batch b uses the first b rows
  std::vector<int64_t> batches;
};

struct Timing {
  double seconds_per_call = 0.0;
  int64_t calls = 0;
};

// Mean seconds per call over at least `min_seconds`; the first call is a warm-up unless it
// alone took that long (then it is the measurement: a long call needs no warm-up).
template <typename Call>
Timing TimeCalls(const Call& call, double min_seconds) {
  Clock::time_point start = Clock::now();
  call();
  const double first = SecondsSince(start);
  if (first >= min_seconds) return {first, 1};
  Timing timing;
  start = Clock::now();
  double elapsed = 0.0;
  do {
    call();
    ++timing.calls;
    elapsed = SecondsSince(start);
  } while (elapsed < min_seconds);
  timing.seconds_per_call = elapsed / timing.calls;
  return timing;
}

double MaxError(const at::Tensor& x, const at::Tensor& reference) {
  return (x.to(at::kDouble) - reference).norm(2, {1}).max().item<double>();
}

std::string Architecture(const IResNetConfig& a) {
  return absl::StrFormat("%d-D, %d blocks x %d (%d layers), c = %g, %s",
                         a.dim, a.num_blocks, a.hidden_width, a.layers_per_block,
                         a.lipschitz_coeff, std::string(ActivationName(a.activation)));
}

// x ~ prior, y = phi(x) + the measurement noise in the network's input space.
at::Tensor RealisticInputs(const Checkpoint& ck, const FrozenIResNet& frozen, int64_t count) {
  auto op = LinearOperator::Create(ck.problem.op).value();
  auto prior = GaussianMixture::Create(*ck.problem.prior).value();
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(absl::GetFlag(FLAGS_seed));
  at::Tensor x = prior->Sample(count, gen);  // float64
  at::Tensor phi_x = frozen.Forward(x).value();
  at::Tensor noise =
      ck.problem.noise_level * at::randn({count, op->output_dim()}, gen, at::kDouble);
  return (phi_x + TargetFor(*op, ck.training.target_space, noise)).to(at::kFloat);
}

absl::StatusOr<Checkpoint> TrainHere(const std::string& preset_name, int64_t steps) {
  Preset preset = GetPreset(preset_name, LossKind::kDivergence).value();
  TrainingRequest request;
  request.problem = preset.problem;
  request.architecture = preset.architecture;
  request.training = preset.training;
  if (steps > 0) request.training.steps = steps;
  request.training.validation_every = 0;  // only the final validation
  std::printf("training %s with the divergence loss here: %lld steps (preset: %lld)%s...\n",
              preset_name.c_str(), static_cast<long long>(request.training.steps),
              static_cast<long long>(preset.training.steps),
              request.training.steps < preset.training.steps
                  ? " -- shortened; a fully trained network contracts harder"
                  : "");
  std::fflush(stdout);
  Clock::time_point start = Clock::now();
  absl::StatusOr<Checkpoint> ck = Train(request);
  if (ck.ok()) {
    std::printf("  took %.1f s; validation MSE / PM = %.3f\n", SecondsSince(start),
                ck->metrics.count("val_mse_ratio_to_pm") ? ck->metrics.at("val_mse_ratio_to_pm")
                                                         : -1.0);
  }
  return ck;
}

absl::StatusOr<BenchNetwork> TrainedNetwork(const std::string& preset_name,
                                            const std::string& path, int64_t steps,
                                            int64_t largest_batch) {
  Checkpoint ck;
  std::string provenance;
  if (!path.empty()) {
    absl::StatusOr<Checkpoint> loaded = LoadCheckpoint(path);
    if (!loaded.ok()) return loaded.status();
    ck = *std::move(loaded);
    provenance = absl::StrCat("checkpoint ", path, ", loss ", LossKindName(ck.training.loss), ", ",
                              ck.training.steps, " steps");
  } else {
    absl::StatusOr<Checkpoint> trained = TrainHere(preset_name, steps);
    if (!trained.ok()) return trained.status();
    ck = *std::move(trained);
    provenance = absl::StrCat("trained here, loss divergence, ", ck.training.steps, " steps");
    const std::string& dir = absl::GetFlag(FLAGS_save_dir);
    if (!dir.empty()) {
      std::string out = absl::StrCat(dir, "/", preset_name, "-divergence.ckpt");
      absl::Status saved = SaveCheckpoint(ck, out);
      std::printf("  %s %s\n", saved.ok() ? "saved to" : "could not save:",
                  saved.ok() ? out.c_str() : saved.ToString().c_str());
    }
  }
  if (!ck.problem.prior.has_value()) {
    return absl::InvalidArgumentError(
        absl::StrCat(preset_name, ": the checkpoint has no Gaussian-mixture prior to draw x from"));
  }
  BenchNetwork b;
  b.name = preset_name;
  absl::StatusOr<std::unique_ptr<IResNet>> net = RestoreNetwork(ck);
  if (!net.ok()) return net.status();
  b.net = *std::move(net);
  absl::StatusOr<std::shared_ptr<const FrozenIResNet>> frozen = FrozenIResNet::Create(*b.net);
  if (!frozen.ok()) return frozen.status();
  b.frozen = *frozen;
  b.inputs = RealisticInputs(ck, *b.frozen, largest_batch);
  b.description = absl::StrCat(
      Architecture(ck.architecture), "; ", provenance, "; inputs y = phi(x) + noise, x ~ prior, ",
      "delta = ", ck.problem.noise_level, " (", TargetSpaceName(ck.training.target_space),
      " space)");
  return b;
}

BenchNetwork SaturatedNetwork(const std::string& name, const IResNetConfig& config,
                              int64_t largest_batch) {
  BenchNetwork b;
  b.name = name;
  b.net = testing::MakeSaturatedNetwork(config, at::kFloat);
  b.frozen = FrozenIResNet::Create(*b.net).value();
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(absl::GetFlag(FLAGS_seed));
  b.inputs = at::randn({largest_batch, config.dim}, gen, at::kFloat) * 1.5;
  b.description = absl::StrCat(Architecture(config),
                               "; every layer at sigma = c; inputs 1.5 * N(0, I)");
  return b;
}

void RunNetwork(const BenchNetwork& b) {
  const int64_t max_batch = absl::GetFlag(FLAGS_max_batch);
  const double min_seconds = absl::GetFlag(FLAGS_min_seconds);
  int64_t largest = 0;
  for (int64_t batch : b.batches) {
    if (batch <= max_batch) largest = std::max(largest, batch);
  }
  std::printf("\n%s: %s\n", b.name.c_str(), b.description.c_str());
  std::printf("  certified block bounds:");
  for (double l : b.frozen->block_lipschitz()) std::printf(" %.4f", l);
  std::printf("\n");
  if (largest == 0) {
    std::printf("  every batch is above --max_batch=%lld: skipped\n",
                static_cast<long long>(max_batch));
    return;
  }

  // The float64 reference for the largest batch; smaller batches use its first rows.
  InverseOptions reference_options;
  reference_options.tolerance = absl::GetFlag(FLAGS_reference_tolerance);
  reference_options.max_iterations = 1000000;
  Clock::time_point start = Clock::now();
  at::Tensor inputs = b.inputs.narrow(0, 0, largest);
  InverseResult reference = b.frozen->Inverse(inputs.to(at::kDouble), reference_options).value();
  std::printf("  reference: float64, tolerance %g, batch %lld: converged %.1f%%, %.1f "
              "iterations/sample, max error bound %.1e (%.1f s)\n",
              reference_options.tolerance, static_cast<long long>(largest),
              100.0 * reference.converged.to(at::kDouble).mean().item<double>(),
              reference.iterations.to(at::kDouble).mean().item<double>(),
              reference.error_bound.max().item<double>(), SecondsSince(start));
  std::fflush(stdout);

  LibTorchLoopInverse baseline(*b.net, absl::GetFlag(FLAGS_baseline_iterations));
  InverseOptions options;
  options.tolerance = absl::GetFlag(FLAGS_tolerance);
  options.anderson = absl::GetFlag(FLAGS_anderson);

  std::printf("  | %7s | %12s | %6s | %5s | %9s | %12s | %6s | %6s | %5s | %9s | %8s |\n", "batch",
              "base smpl/s", "calls", "iters", "max err", "invnet smp/s", "calls", "iters",
              "conv", "max err", "speed-up");
  std::printf("  |%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|\n", std::string(9, '-').c_str(),
              std::string(14, '-').c_str(), std::string(8, '-').c_str(),
              std::string(7, '-').c_str(), std::string(11, '-').c_str(),
              std::string(14, '-').c_str(), std::string(8, '-').c_str(),
              std::string(8, '-').c_str(), std::string(7, '-').c_str(),
              std::string(11, '-').c_str(), std::string(10, '-').c_str());
  for (int64_t batch : b.batches) {
    if (batch > max_batch) {
      std::printf("  | %7lld | skipped: batch > --max_batch=%lld\n", static_cast<long long>(batch),
                  static_cast<long long>(max_batch));
      continue;
    }
    at::Tensor y = inputs.narrow(0, 0, batch).contiguous();
    at::Tensor ref = reference.x.narrow(0, 0, batch);
    c10::InferenceMode inference;

    at::Tensor base_x;
    Timing base = TimeCalls([&] { base_x = baseline.Inverse(y); }, min_seconds);
    const double base_error = MaxError(base_x, ref);

    InverseResult ours;
    Timing mine = TimeCalls([&] { ours = b.frozen->Inverse(y, options).value(); }, min_seconds);
    const double our_error = MaxError(ours.x, ref);

    const double base_rate = batch / base.seconds_per_call;
    const double our_rate = batch / mine.seconds_per_call;
    std::printf("  | %7lld | %12.0f | %6lld | %5lld | %9.2e | %12.0f | %6lld | %6.1f | %5.3f | "
                "%9.2e | %7.1fx |\n",
                static_cast<long long>(batch), base_rate, static_cast<long long>(base.calls),
                static_cast<long long>(baseline.iterations_per_sample()), base_error, our_rate,
                static_cast<long long>(mine.calls),
                ours.iterations.to(at::kDouble).mean().item<double>(),
                ours.converged.to(at::kDouble).mean().item<double>(), our_error,
                our_rate / base_rate);
    std::fflush(stdout);
  }
}

int Main() {
  at::set_num_threads(absl::GetFlag(FLAGS_threads));
  at::manual_seed(0);
  const int64_t max_batch = absl::GetFlag(FLAGS_max_batch);
  const std::vector<int64_t> batches = {1, 1000, 100000};
  const int64_t largest = std::min<int64_t>(max_batch, batches.back());
  std::printf("inverse_bench: LibTorch intra-op threads %d (--threads), machine hardware "
              "threads %u\n",
              at::get_num_threads(), std::thread::hardware_concurrency());
  std::printf("baseline: LibTorch loop, %lld fixed iterations per block on the whole batch "
              "(addmm + activation per layer)\n",
              static_cast<long long>(absl::GetFlag(FLAGS_baseline_iterations)));
  std::printf("invnet:   FrozenIResNet::Inverse, float32, tolerance %g, anderson %s\n",
              absl::GetFlag(FLAGS_tolerance), absl::GetFlag(FLAGS_anderson) ? "on" : "off");
  std::printf("timing:   mean per call over >= %g s; speed-up = invnet samples/s / baseline "
              "samples/s; max err = max over the batch of ||x - x_ref||; iters = g evaluations "
              "per sample over all blocks\n",
              absl::GetFlag(FLAGS_min_seconds));
  std::fflush(stdout);

  std::vector<BenchNetwork> trained;
  for (const auto& [name, path, steps] :
       {std::make_tuple(std::string("bimodal2d"), absl::GetFlag(FLAGS_bimodal2d),
                        absl::GetFlag(FLAGS_bimodal2d_steps)),
        std::make_tuple(std::string("blur64"), absl::GetFlag(FLAGS_blur64),
                        absl::GetFlag(FLAGS_blur64_steps))}) {
    absl::StatusOr<BenchNetwork> b = TrainedNetwork(name, path, steps, largest);
    if (!b.ok()) {
      std::fprintf(stderr, "%s: %s\n", name.c_str(), b.status().ToString().c_str());
      return 1;
    }
    b->batches = batches;
    trained.push_back(*std::move(b));
  }

  std::printf("\n== trained networks ==\n");
  for (const BenchNetwork& b : trained) RunNetwork(b);

  if (absl::GetFlag(FLAGS_saturated)) {
    std::printf("\n== saturated networks (every layer at sigma = c) ==\n");
    IResNetConfig two_d;
    two_d.dim = 2;
    two_d.num_blocks = 4;
    two_d.hidden_width = 64;
    two_d.lipschitz_coeff = 0.9;
    BenchNetwork small = SaturatedNetwork("2-D saturated", two_d, largest);
    small.batches = batches;
    RunNetwork(small);
    IResNetConfig blur;
    blur.dim = 64;
    blur.num_blocks = 6;
    blur.hidden_width = 256;
    blur.lipschitz_coeff = 0.95;
    BenchNetwork big = SaturatedNetwork("64-D saturated", blur, std::min<int64_t>(largest, 1000));
    big.batches = {1, 1000};
    RunNetwork(big);
  }
  return 0;
}

}  // namespace
}  // namespace invnet

int main(int argc, char** argv) {
  std::printf("%s\n", invnet::EnsureOptimizedBlas(argv).c_str());
  absl::ParseCommandLine(argc, argv);
  return invnet::Main();
}
