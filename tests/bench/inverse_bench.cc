// Inverse throughput of FrozenIResNet: samples/s and iterations per sample.
//
//   build/tests/bench/inverse_bench [--threads=2] [--checkpoint=PATH ...]
//
// Without checkpoints it measures networks of the shapes of method.md section 5 whose every layer
// is normalised to exactly sigma = c ("saturated"): random initialisations have smaller norms
// and converge unrealistically fast, while trained networks approach the bound. With
// --checkpoint it measures trained networks too (batch sizes 1, 1000, 100000).

#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_split.h"
#include "models/checkpoint.h"
#include "models/inverse.h"
#include "models/iresnet.h"
#include "tests/testing/networks.h"

ABSL_FLAG(int, threads, 2, "LibTorch intra-op threads");
ABSL_FLAG(std::string, checkpoints, "", "comma-separated checkpoint files to measure as well");
ABSL_FLAG(double, tolerance, 1e-5, "solver tolerance (absolute, per block)");
ABSL_FLAG(bool, anderson, false, "Anderson acceleration");

namespace invnet {
namespace {

struct Case {
  std::string name;
  std::shared_ptr<const FrozenIResNet> network;
  std::vector<int64_t> batches;
};

void Measure(const Case& c, int64_t batch) {
  InverseOptions options;
  options.tolerance = absl::GetFlag(FLAGS_tolerance);
  options.anderson = absl::GetFlag(FLAGS_anderson);
  at::Tensor y = at::randn({batch, c.network->dim()}) * 1.5;
  // Repeat small batches so each measurement lasts long enough to time.
  const int64_t repeats = std::max<int64_t>(1, 20000 / batch);
  auto warm = c.network->Inverse(y, options);  // first touch of the weights
  if (!warm.ok()) {
    std::printf("%s: %s\n", c.name.c_str(), warm.status().ToString().c_str());
    return;
  }
  auto start = std::chrono::steady_clock::now();
  InverseResult last;
  for (int64_t r = 0; r < repeats; ++r) last = c.network->Inverse(y, options).value();
  double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("%-34s %8lld %14.0f %11.1f %10.3f %12.2e\n", c.name.c_str(),
              static_cast<long long>(batch), batch * repeats / seconds,
              last.iterations.to(at::kDouble).mean().item<double>(),
              last.converged.to(at::kDouble).mean().item<double>(),
              last.forward_residual.max().item<double>());
}

int Main() {
  at::set_num_threads(absl::GetFlag(FLAGS_threads));
  at::manual_seed(0);
  std::vector<Case> cases;
  IResNetConfig two_d;
  two_d.dim = 2;
  two_d.num_blocks = 4;
  two_d.hidden_width = 64;
  two_d.lipschitz_coeff = 0.9;
  cases.push_back({"2-D, 4x64, c=0.9, saturated",
                   FrozenIResNet::Create(*testing::MakeSaturatedNetwork(two_d, at::kFloat)).value(),
                   {1, 1000, 100000}});
  IResNetConfig blur;
  blur.dim = 64;
  blur.num_blocks = 6;
  blur.hidden_width = 256;
  blur.lipschitz_coeff = 0.95;
  cases.push_back({"64-D, 6x256, c=0.95, saturated",
                   FrozenIResNet::Create(*testing::MakeSaturatedNetwork(blur, at::kFloat)).value(),
                   {1, 1000}});
  for (absl::string_view path :
       absl::StrSplit(absl::GetFlag(FLAGS_checkpoints), ',', absl::SkipEmpty())) {
    auto ck = LoadCheckpoint(std::string(path));
    if (!ck.ok()) {
      std::fprintf(stderr, "%s\n", ck.status().ToString().c_str());
      return 1;
    }
    auto net = RestoreNetwork(*ck).value();
    cases.push_back({std::string(path), FrozenIResNet::Create(*net).value(), {1, 1000, 100000}});
  }
  std::printf("threads=%d tolerance=%g anderson=%d\n", at::get_num_threads(),
              absl::GetFlag(FLAGS_tolerance), absl::GetFlag(FLAGS_anderson) ? 1 : 0);
  std::printf("%-34s %8s %14s %11s %10s %12s\n", "network", "batch", "samples/s", "iters/smpl",
              "converged", "max resid");
  for (const Case& c : cases) {
    for (int64_t batch : c.batches) Measure(c, batch);
  }
  return 0;
}

}  // namespace
}  // namespace invnet

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return invnet::Main();
}
