// The Reconstruct batcher: merged solves give every caller its own rows, the queue bound
// refuses at once, queued callers can leave, and options that shape a solve keep requests apart.

#include "server/reconstruct_batcher.h"

#include <atomic>
#include <thread>
#include <vector>

#include <ATen/ATen.h>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/networks.h"

namespace invnet::server {
namespace {

using ::testing::HasSubstr;

class BatcherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    IResNetConfig config;
    config.dim = 2;
    config.num_blocks = 4;
    config.hidden_width = 32;
    config.seed = 7;
    auto net = testing::MakeSaturatedNetwork(config, at::kFloat);
    network_ = FrozenIResNet::Create(*net).value();
  }

  // Distinct measurements for caller `i`.
  at::Tensor Target(int i, int64_t rows) const {
    return at::sin(at::arange(rows * 2, at::kFloat).reshape({rows, 2}) * 0.37 + i);
  }

  std::shared_ptr<const FrozenIResNet> network_;
};

TEST_F(BatcherTest, ConcurrentRequestsMergeAndEachGetsItsOwnRows) {
  BatcherOptions options;
  options.max_delay = absl::Milliseconds(50);  // make merging certain, not left to timing
  options.max_concurrent_solves = 1;
  ReconstructBatcher batcher(options);
  constexpr int kCallers = 12;
  std::vector<absl::StatusOr<InverseResult>> results(kCallers, absl::UnknownError("unset"));
  std::vector<at::Tensor> targets;
  for (int i = 0; i < kCallers; ++i) targets.push_back(Target(i, 1 + i % 3));
  std::vector<std::thread> threads;
  for (int i = 0; i < kCallers; ++i) {
    threads.emplace_back([&, i] {
      results[i] = batcher.Solve(*network_, targets[i], InverseOptions{}, [] { return false; });
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_GT(batcher.largest_merge(), 1);
  for (int i = 0; i < kCallers; ++i) {
    ASSERT_TRUE(results[i].ok()) << results[i].status();
    const InverseResult alone = network_->Inverse(targets[i], InverseOptions{}).value();
    ASSERT_EQ(results[i]->x.size(0), targets[i].size(0));
    EXPECT_TRUE(results[i]->converged.all().item<bool>());
    // Each sample stops on its own, so merging changes nothing beyond rounding.
    EXPECT_LT((results[i]->x - alone.x).abs().max().item<float>(), 1e-5) << "caller " << i;
    const at::Tensor image = network_->Forward(results[i]->x).value();
    EXPECT_LT((image - targets[i]).abs().max().item<float>(), 1e-4);
  }
}

// Every merged solve has exactly one leader, whose timing counts it; every caller's timing names
// the rows of the solve that included it and splits its time into queue and solve.
TEST_F(BatcherTest, TimingSplitsQueueFromSolveAndNamesOneLeaderPerSolve) {
  BatcherOptions options;
  options.max_delay = absl::Milliseconds(100);  // the first leader waits for the others
  options.max_concurrent_solves = 1;
  ReconstructBatcher batcher(options);
  constexpr int kCallers = 6;
  std::vector<SolveTiming> timings(kCallers);
  std::vector<at::Tensor> targets;
  for (int i = 0; i < kCallers; ++i) targets.push_back(Target(i, 1 + i % 2));
  const absl::Time start = absl::Now();
  std::vector<std::thread> threads;
  for (int i = 0; i < kCallers; ++i) {
    threads.emplace_back([&, i] {
      EXPECT_TRUE(
          batcher.Solve(*network_, targets[i], InverseOptions{}, nullptr, &timings[i]).ok());
    });
  }
  for (auto& t : threads) t.join();
  const absl::Duration elapsed = absl::Now() - start;
  int64_t led_rows = 0;
  int64_t rows = 0;
  for (const SolveTiming& timing : timings) {
    EXPECT_GT(timing.solve, absl::ZeroDuration());
    EXPECT_GE(timing.queue, absl::ZeroDuration());
    EXPECT_LE(timing.queue + timing.solve, elapsed);
    EXPECT_GE(timing.solve_rows, 1);
    if (timing.led) led_rows += timing.solve_rows;
  }
  for (const at::Tensor& target : targets) rows += target.size(0);
  // Counting the leaders' solves counts every row once.
  EXPECT_EQ(led_rows, rows);
  // A lone request leads its own solve.
  SolveTiming alone;
  ASSERT_TRUE(batcher.Solve(*network_, Target(0, 3), InverseOptions{}, nullptr, &alone).ok());
  EXPECT_TRUE(alone.led);
  EXPECT_EQ(alone.solve_rows, 3);
}

TEST_F(BatcherTest, WithoutDelayALoneRequestIsSolvedAtOnce) {
  ReconstructBatcher batcher(BatcherOptions{});
  const at::Tensor y = Target(0, 5);
  auto result = batcher.Solve(*network_, y, InverseOptions{}, nullptr);
  ASSERT_TRUE(result.ok()) << result.status();
  const InverseResult alone = network_->Inverse(y, InverseOptions{}).value();
  EXPECT_TRUE(at::equal(result->x, alone.x));
  EXPECT_EQ(batcher.largest_merge(), 1);
}

TEST_F(BatcherTest, RequestsOnlyQueueWhenEverySolveSlotIsBusy) {
  BatcherOptions options;
  options.max_delay = absl::Milliseconds(300);  // each leader holds its slot this long
  options.max_concurrent_solves = 3;
  ReconstructBatcher batcher(options);
  std::vector<std::thread> threads;
  for (int i = 0; i < 3; ++i) {
    threads.emplace_back([&, i] {
      EXPECT_TRUE(batcher.Solve(*network_, Target(i, 1), InverseOptions{}, nullptr).ok());
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(batcher.largest_merge(), 1) << "three slots, three requests: nobody queued";
}

TEST_F(BatcherTest, AFullQueueRefusesAtOnce) {
  BatcherOptions options;
  options.max_queued_requests = 2;
  options.max_delay = absl::Milliseconds(400);  // the leader holds the queue this long
  options.max_concurrent_solves = 1;
  ReconstructBatcher batcher(options);
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int i = 0; i < 2; ++i) {
    threads.emplace_back([&, i] {
      if (batcher.Solve(*network_, Target(i, 1), InverseOptions{}, nullptr).ok()) ++ok;
    });
  }
  absl::SleepFor(absl::Milliseconds(100));  // both are queued by now
  const absl::Time start = absl::Now();
  auto refused = batcher.Solve(*network_, Target(9, 1), InverseOptions{}, nullptr);
  const absl::Duration waited = absl::Now() - start;
  for (auto& t : threads) t.join();
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(refused.status().message(), HasSubstr("max_queued_requests 2"));
  EXPECT_LT(waited, absl::Milliseconds(200)) << "refused only after the queue drained";
  EXPECT_EQ(ok.load(), 2);
  // The bound counts requests in flight, not requests ever made.
  EXPECT_TRUE(batcher.Solve(*network_, Target(3, 1), InverseOptions{}, nullptr).ok());
}

TEST_F(BatcherTest, AQueuedRequestWhoseClientGaveUpLeavesTheQueue) {
  BatcherOptions options;
  options.max_delay = absl::Milliseconds(500);
  options.max_concurrent_solves = 1;
  ReconstructBatcher batcher(options);
  absl::StatusOr<InverseResult> leader = absl::UnknownError("unset");
  std::thread first([&] {
    leader = batcher.Solve(*network_, Target(0, 1), InverseOptions{}, [] { return false; });
  });
  absl::SleepFor(absl::Milliseconds(50));
  const absl::Time start = absl::Now();
  auto abandoned = batcher.Solve(*network_, Target(1, 1), InverseOptions{}, [] { return true; });
  const absl::Duration waited = absl::Now() - start;
  first.join();
  EXPECT_EQ(abandoned.status().code(), absl::StatusCode::kCancelled);
  EXPECT_LT(waited, absl::Milliseconds(300)) << "it waited for the leader's batch";
  ASSERT_TRUE(leader.ok()) << leader.status();
  EXPECT_EQ(leader->x.size(0), 1);
}

TEST_F(BatcherTest, DifferentSolverOptionsAreNotMerged) {
  BatcherOptions options;
  options.max_delay = absl::Milliseconds(50);
  ReconstructBatcher batcher(options);
  InverseOptions loose;
  loose.tolerance = 1e-2;
  loose.anderson = false;
  InverseOptions tight;
  tight.tolerance = 1e-6;
  tight.anderson = false;
  const at::Tensor y = Target(4, 3);
  absl::StatusOr<InverseResult> a = absl::UnknownError("unset"), b = a;
  std::thread ta([&] { a = batcher.Solve(*network_, y, loose, nullptr); });
  std::thread tb([&] { b = batcher.Solve(*network_, y, tight, nullptr); });
  ta.join();
  tb.join();
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(batcher.largest_merge(), 1);
  EXPECT_TRUE(at::equal(a->iterations, network_->Inverse(y, loose).value().iterations));
  EXPECT_TRUE(at::equal(b->iterations, network_->Inverse(y, tight).value().iterations));
  EXPECT_LT(a->iterations.sum().item<int64_t>(), b->iterations.sum().item<int64_t>());
}

TEST_F(BatcherTest, ALargeRequestIsSolvedOnItsOwn) {
  BatcherOptions options;
  options.max_batch_rows = 4;
  ReconstructBatcher batcher(options);
  const at::Tensor y = Target(2, 10);
  auto result = batcher.Solve(*network_, y, InverseOptions{}, nullptr);
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(result->x.size(0), 10);
  EXPECT_EQ(batcher.largest_merge(), 0);  // it never went through a group
}

TEST(BatcherOptionsTest, BadOptionsNameTheFlag) {
  BatcherOptions bad_rows;
  bad_rows.max_batch_rows = 0;
  EXPECT_THAT(ValidateBatcherOptions(bad_rows).message(), HasSubstr("batch_max_rows"));
  BatcherOptions bad_delay;
  bad_delay.max_delay = absl::Seconds(5);
  EXPECT_THAT(ValidateBatcherOptions(bad_delay).message(), HasSubstr("batch_max_delay"));
  BatcherOptions bad_solves;
  bad_solves.max_concurrent_solves = -1;
  EXPECT_THAT(ValidateBatcherOptions(bad_solves).message(), HasSubstr("batch_concurrent_solves"));
  BatcherOptions bad_queue;
  bad_queue.max_queued_requests = 0;
  EXPECT_THAT(ValidateBatcherOptions(bad_queue).message(), HasSubstr("max_queued_requests"));
  EXPECT_TRUE(ValidateBatcherOptions(BatcherOptions{}).ok());
}

}  // namespace
}  // namespace invnet::server
