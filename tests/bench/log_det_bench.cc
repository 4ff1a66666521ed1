// Cost of one log-det training step, exact against stochastic, by dimension: the measurement
// behind TrainingSpec::exact_jacobian_max_dim's default (issue 12).
//
//   build/tests/bench/log_det_bench [--threads=2] [--dims=16,32,64,128] [--steps=5]
//       [--batch_size=256] [--blocks=6] [--width=256] [--layers=3]
//
// A step is the log-det loss's network part as models::ComputeLoss runs it: phi(x) and the
// log det (jacobian.h LogDet with the given estimator), 1/2 ||phi(x) - x||^2 - alpha log det,
// backward; and the same for the divergence loss (exact trace against Hutchinson), which shares
// the threshold. (No batch draw, no optimiser step: those cost the same for every estimator.)
// The network is blur64's shape (6 blocks x 256 wide x 3 layers, c = 0.857) at each dimension.
// Each estimator takes one untimed step, then --steps timed steps; the fastest step is printed
// (the most robust figure on a shared machine; the roulette's step varies with its random
// number of terms, so its mean is printed too). --cpu_time measures the process's CPU seconds
// instead of wall seconds: on a machine that other jobs load, it stays close to the unloaded
// cost (with --threads=1 it is the single-core time).

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "models/blas_setup.h"
#include "models/iresnet.h"
#include "models/jacobian.h"

ABSL_FLAG(int, threads, 2, "LibTorch intra-op threads");
ABSL_FLAG(std::string, dims, "16,32,64,128", "signal dimensions n, comma-separated");
ABSL_FLAG(int64_t, steps, 5, "timed steps per estimator and dimension");
ABSL_FLAG(int64_t, batch_size, 256, "signals per step (blur64's batch)");
ABSL_FLAG(int64_t, blocks, 6, "residual blocks");
ABSL_FLAG(int64_t, width, 256, "hidden width");
ABSL_FLAG(int64_t, layers, 3, "layers per block");
ABSL_FLAG(bool, cpu_time, false, "report process CPU seconds instead of wall seconds");

namespace invnet {
namespace {

struct Variant {
  const char* name;
  JacobianEstimatorOptions options;
};

double Now() {
  if (absl::GetFlag(FLAGS_cpu_time)) {
    timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
  }
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

struct StepSeconds {
  double best = 0;
  double mean = 0;
};

StepSeconds SecondsPerStep(const IResNet& net, const at::Tensor& x,
                           const JacobianEstimatorOptions& o, int64_t steps, bool divergence) {
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(1);
  std::vector<at::Tensor> params = net.Parameters();
  auto step = [&] {
    ForwardAndValue r = divergence ? Divergence(net, x, o, gen) : LogDet(net, x, o, gen);
    at::Tensor objective = 0.5 * (r.output - x).pow(2).sum(1).mean() - 0.01 * r.value.mean();
    objective.backward();
    for (at::Tensor& p : params) p.mutable_grad().reset();
  };
  step();
  StepSeconds result;
  result.best = 1e300;
  for (int64_t i = 0; i < steps; ++i) {
    const double start = Now();
    step();
    const double elapsed = Now() - start;
    result.best = std::min(result.best, elapsed);
    result.mean += elapsed / static_cast<double>(steps);
  }
  return result;
}

int Run() {
  at::set_num_threads(absl::GetFlag(FLAGS_threads));
  std::printf("log-det training step (%s seconds), %lld blocks x %lld wide x %lld layers, batch %lld, "
              "%d threads\n",
              absl::GetFlag(FLAGS_cpu_time) ? "CPU" : "wall",
              static_cast<long long>(absl::GetFlag(FLAGS_blocks)),
              static_cast<long long>(absl::GetFlag(FLAGS_width)),
              static_cast<long long>(absl::GetFlag(FLAGS_layers)),
              static_cast<long long>(absl::GetFlag(FLAGS_batch_size)), absl::GetFlag(FLAGS_threads));
  std::printf("%5s  %9s  %9s  %9s  %9s  %10s  %9s  %9s  %9s\n", "n", "exact", "roulette",
              "(mean)", "series", "exact/roul", "div exact", "hutch", "exact/hut");
  for (absl::string_view dim_text : absl::StrSplit(absl::GetFlag(FLAGS_dims), ',')) {
    int64_t dim = 0;
    if (!absl::SimpleAtoi(dim_text, &dim) || dim < 1) {
      std::fprintf(stderr, "--dims: bad value '%s'\n", std::string(dim_text).c_str());
      return 2;
    }
    IResNetConfig config;
    config.dim = dim;
    config.num_blocks = absl::GetFlag(FLAGS_blocks);
    config.hidden_width = absl::GetFlag(FLAGS_width);
    config.layers_per_block = absl::GetFlag(FLAGS_layers);
    config.lipschitz_coeff = 0.857;
    auto net = IResNet::Create(config, at::kFloat);
    if (!net.ok()) {
      std::fprintf(stderr, "%s\n", std::string(net.status().message()).c_str());
      return 1;
    }
    at::Tensor x = at::randn({absl::GetFlag(FLAGS_batch_size), dim});
    JacobianEstimatorOptions exact;
    exact.exact_max_dim = dim;
    JacobianEstimatorOptions roulette;
    roulette.exact_max_dim = 0;
    JacobianEstimatorOptions series = roulette;
    series.log_det = LogDetEstimator::kTruncatedSeries;
    const int64_t steps = absl::GetFlag(FLAGS_steps);
    const StepSeconds t_exact = SecondsPerStep(**net, x, exact, steps, false);
    const StepSeconds t_roulette = SecondsPerStep(**net, x, roulette, steps, false);
    const StepSeconds t_series = SecondsPerStep(**net, x, series, steps, false);
    const StepSeconds d_exact = SecondsPerStep(**net, x, exact, steps, true);
    const StepSeconds d_hutchinson = SecondsPerStep(**net, x, roulette, steps, true);
    std::printf("%5lld  %9.4f  %9.4f  %9.4f  %9.4f  %10.1f  %9.4f  %9.4f  %9.1f\n",
                static_cast<long long>(dim), t_exact.best, t_roulette.best, t_roulette.mean,
                t_series.best, t_exact.best / t_roulette.best, d_exact.best, d_hutchinson.best,
                d_exact.best / d_hutchinson.best);
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace
}  // namespace invnet

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  std::printf("%s\n", invnet::EnsureOptimizedBlas(argv).c_str());
  return invnet::Run();
}
