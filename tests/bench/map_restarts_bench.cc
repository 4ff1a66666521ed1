// How often the MAP search's extra starts for n > 2 (estimators.h: along each component's top
// two posterior directions, 5K + 1 starts) find a lower objective than the K + 1 basic starts,
// on blur64's problem (issue 12).
//
//   build/tests/bench/map_restarts_bench [--threads=2] [--samples=500] [--seed=0]
//
// Draws (x, y) pairs from the preset's prior and operator, runs BayesEstimators::Map and
// MapFromBasicStarts on the same y, and prints the fraction of samples whose objective the
// extra starts lowered by more than 1e-9 (1 + |f|), the mean and largest decrease, the mean
// distance between the two answers where they differ, the largest gradient norm of each, and
// the time of each search.

#include <chrono>
#include <cstdio>
#include <string>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "models/blas_setup.h"
#include "models/estimators.h"
#include "models/operators.h"
#include "models/presets.h"
#include "models/priors.h"

ABSL_FLAG(int, threads, 2, "LibTorch intra-op threads");
ABSL_FLAG(int64_t, samples, 500, "measurements drawn");
ABSL_FLAG(uint64_t, seed, 0, "seed of the draws");
ABSL_FLAG(std::string, preset, "blur64", "preset whose problem is used");

namespace invnet {
namespace {

int Run() {
  at::set_num_threads(absl::GetFlag(FLAGS_threads));
  auto preset = GetPreset(absl::GetFlag(FLAGS_preset), LossKind::kApproximation);
  if (!preset.ok()) {
    std::fprintf(stderr, "%s\n", std::string(preset.status().message()).c_str());
    return 1;
  }
  auto op = LinearOperator::Create(preset->problem.op);
  auto prior = GaussianMixture::Create(*preset->problem.prior);
  if (!op.ok() || !prior.ok()) return 1;
  const double delta = preset->problem.noise_level;
  auto estimators = BayesEstimators::Create(**op, **prior, delta);
  if (!estimators.ok()) return 1;
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(absl::GetFlag(FLAGS_seed));
  const int64_t count = absl::GetFlag(FLAGS_samples);
  at::Tensor x = (*prior)->Sample(count, gen);
  at::Tensor clean = (*op)->Apply(x);
  at::Tensor y = clean + delta * at::randn(clean.sizes(), gen, clean.options());

  using Clock = std::chrono::steady_clock;
  const auto t0 = Clock::now();
  MapResult basic = (*estimators)->MapFromBasicStarts(y);
  const auto t1 = Clock::now();
  MapResult extended = (*estimators)->Map(y);
  const auto t2 = Clock::now();

  const at::Tensor decrease = basic.objective - extended.objective;
  const at::Tensor lower = decrease > 1e-9 * (1 + basic.objective.abs());
  const int64_t lowered = lower.sum().item<int64_t>();
  const at::Tensor distance = (basic.x - extended.x).norm(2, 1);
  std::printf("%s: n = %lld, %lld samples, delta %g\n", preset->name.c_str(),
              static_cast<long long>((*op)->input_dim()), static_cast<long long>(count), delta);
  std::printf("extra starts found a lower objective: %lld / %lld (%.2f%%)\n",
              static_cast<long long>(lowered), static_cast<long long>(count),
              100.0 * static_cast<double>(lowered) / static_cast<double>(count));
  if (lowered > 0) {
    std::printf("  decrease where lower: mean %.4g, max %.4g; answer moved by mean %.4g\n",
                decrease.masked_select(lower).mean().item<double>(),
                decrease.max().item<double>(),
                distance.masked_select(lower).mean().item<double>());
  }
  std::printf("  worst increase (should be <= 0): %.3g\n", (-decrease).max().item<double>());
  std::printf("max gradient norm: basic %.3g, extended %.3g\n",
              basic.gradient_norm.max().item<double>(),
              extended.gradient_norm.max().item<double>());
  std::printf("time: basic %.2f s, extended %.2f s\n",
              std::chrono::duration<double>(t1 - t0).count(),
              std::chrono::duration<double>(t2 - t1).count());
  return 0;
}

}  // namespace
}  // namespace invnet

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  std::printf("%s\n", invnet::EnsureOptimizedBlas(argv).c_str());
  return invnet::Run();
}
