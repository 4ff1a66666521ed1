#include "models/memory_estimate.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <functional>
#include <thread>

#include <ATen/ATen.h>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "models/presets.h"
#include "models/trainer.h"
#include "tests/testing/status_matchers.h"

namespace invnet {
namespace {

IResNetConfig Architecture(int64_t dim, int64_t blocks, int64_t width, int64_t layers) {
  IResNetConfig config;
  config.dim = dim;
  config.num_blocks = blocks;
  config.hidden_width = width;
  config.layers_per_block = layers;
  return config;
}

TEST(MemoryEstimateTest, StateNumbersAreTheNetworksOwn) {
  for (const IResNetConfig& config :
       {Architecture(2, 4, 64, 3), Architecture(5, 2, 7, 1), Architecture(3, 3, 9, 2)}) {
    auto net = IResNet::Create(config, at::kFloat).value();
    double numel = 0;
    for (const auto& [name, tensor] : net->NamedState()) numel += tensor.numel();
    EXPECT_EQ(NetworkStateNumbers(config), numel) << config.layers_per_block;
    int64_t layers = 0;
    for (const auto& block : LayerShapes(config)) layers += static_cast<int64_t>(block.size());
    EXPECT_EQ(layers * 5, static_cast<int64_t>(net->NamedState().size()));
  }
}

TEST(MemoryEstimateTest, GrowsWithEverySizeOfTheJob) {
  const IResNetConfig a = Architecture(16, 4, 128, 3);
  TrainingSpec t;
  t.loss = LossKind::kLogDet;
  t.batch_size = 64;
  t.exact_jacobian_max_dim = 8;  // stochastic at n = 16
  ProblemSize size{16, 2, 0};
  const double base = EstimateTrainingMemory(a, t, size).total();
  auto bigger = [&](const std::function<void(IResNetConfig&, TrainingSpec&, ProblemSize&)>& grow) {
    IResNetConfig a2 = a;
    TrainingSpec t2 = t;
    ProblemSize s2 = size;
    grow(a2, t2, s2);
    return EstimateTrainingMemory(a2, t2, s2).total();
  };
  EXPECT_GT(bigger([](auto& a, auto&, auto&) { a.dim = 32; }), base);
  EXPECT_GT(bigger([](auto& a, auto&, auto&) { a.num_blocks = 8; }), base);
  EXPECT_GT(bigger([](auto& a, auto&, auto&) { a.hidden_width = 256; }), base);
  EXPECT_GT(bigger([](auto& a, auto&, auto&) { a.layers_per_block = 5; }), base);
  EXPECT_GT(bigger([](auto&, auto& t, auto&) { t.batch_size = 128; }), base);
  EXPECT_GT(bigger([](auto&, auto& t, auto&) { t.validation_size = 100000; }), base);
  EXPECT_GT(bigger([](auto&, auto& t, auto&) { t.hutchinson_probes = 4; }), base);
  // The truncated series keeps a graph per term (10 by default); the Russian roulette (the
  // default, `base`) keeps one and applies the rest without a graph.
  const double truncated = bigger(
      [](auto&, auto& t, auto&) { t.log_det_estimator = LogDetEstimator::kTruncatedSeries; });
  EXPECT_GT(truncated, base);
  EXPECT_GT(bigger([](auto&, auto& t, auto&) {
              t.log_det_estimator = LogDetEstimator::kTruncatedSeries;
              t.log_det_series_terms = 20;
            }),
            truncated);
  EXPECT_GT(bigger([](auto&, auto& t, auto&) { t.exact_jacobian_max_dim = 16; }), base);
  EXPECT_GT(bigger([](auto&, auto&, auto& s) { s.prior_components = 8; }), base);
  EXPECT_GT(bigger([](auto&, auto&, auto& s) { s.measurement_dim = 64; }), base);
  EXPECT_GT(bigger([](auto&, auto&, auto& s) { s.dataset_rows = 100000; }), base);
  // The approximation loss carries no tangents.
  EXPECT_LT(bigger([](auto&, auto& t, auto&) { t.loss = LossKind::kApproximation; }), base);
}

TEST(MemoryEstimateTest, TheLargestArchitectureIsTensOfGigabytes) {
  // 64 blocks of 8 layers 4096 wide: 64 * (6 * 4096^2 + ...) ~ 6.4e9 weights, 26 GB in float32
  // before gradients and optimiser state.
  TrainingSpec t;
  const TrainingMemory m =
      EstimateTrainingMemory(Architecture(4096, 64, 4096, 8), t, ProblemSize{4096, 0, 0});
  EXPECT_GT(m.network, 4 * 26e9);
  EXPECT_THAT(m.Describe(), ::testing::HasSubstr("GB"));
  EXPECT_EQ(FormatBytes(1.5e9), "1.5 GB");
  EXPECT_EQ(FormatBytes(12e6), "12 MB");
}

// Resident memory of this process, bytes.
double ResidentBytes() {
  std::ifstream statm("/proc/self/statm");
  long size = 0, resident = 0;
  statm >> size >> resident;
  return static_cast<double>(resident) * sysconf(_SC_PAGESIZE);
}

TEST(MemoryEstimateTest, CloseToTheResidentMemoryATrainingJobAdds) {
#if defined(__SANITIZE_ADDRESS__)
  // AddressSanitizer's quarantine and shadow memory inflate resident memory (scripts/sanitize.sh
  // builds this test so): the comparison means nothing there.
  GTEST_SKIP() << "resident memory is not meaningful under AddressSanitizer";
#endif
  // A job whose tensors dominate what LibTorch itself holds: exact log det at n = 32 carries 32
  // tangents of width 512 through every layer.
  TrainingRequest request;
  request.architecture = Architecture(32, 4, 512, 3);
  request.training.loss = LossKind::kLogDet;
  request.training.exact_jacobian_max_dim = 32;
  request.training.batch_size = 64;
  request.training.steps = 3;
  request.training.validation_every = 0;
  request.training.validation_size = 200;
  request.problem.op.kind = OperatorKind::kIdentity;
  request.problem.op.dim = 32;
  request.problem.noise_level = 0.1;
  GaussianMixtureSpec prior;
  prior.weights = at::full({2}, 0.5, at::kDouble);
  prior.means = at::randn({2, 32}, at::kDouble);
  prior.covariances = at::eye(32, at::kDouble).expand({2, 32, 32}).clone() * 0.1;
  request.problem.prior = prior;
  const double estimate =
      EstimateTrainingMemory(request.architecture, request.training,
                             SizeOf(request.problem, request.architecture.dim))
          .total();

  const double baseline = ResidentBytes();
  std::atomic<bool> done{false};
  std::atomic<double> peak{baseline};
  std::thread sampler([&] {
    while (!done) {
      peak = std::max(peak.load(), ResidentBytes());
      std::this_thread::sleep_for(std::chrono::milliseconds(1));  // sampling period
    }
  });
  absl::StatusOr<Checkpoint> trained = Train(request);
  done = true;
  sampler.join();
  ASSERT_TRUE(trained.ok()) << trained.status();
  const double measured = peak - baseline;
  std::printf("estimate %.0f MB, measured peak %.0f MB above %.0f MB\n", estimate / 1e6,
              measured / 1e6, baseline / 1e6);
  EXPECT_GT(measured, 0.3 * estimate);
  EXPECT_LT(measured, 1.5 * estimate);
}

}  // namespace
}  // namespace invnet
