#include "client/load_generator.h"

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/client/fake_server.h"
#include "tests/testing/status_matchers.h"

namespace invnet::client {
namespace {

using ::invnet::client::testing::FakeServer;
using ::invnet::client::testing::MakeModel;
using ::invnet::testing::IsOk;

class LoadGeneratorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::MutexLock lock(&fake_.state().mu);
    fake_.state().models.push_back(MakeModel("blur", 1, 3, 3));
  }
  FakeServer fake_;
};

// A server slower than the asked-for rate answers after the scheduled end: the measured time
// runs until the last answer, so the throughput is what the server did, not the rate asked for.
TEST_F(LoadGeneratorTest, AFixedRateTheServerCannotKeepUpWithIsNotReportedAsAchieved) {
  {
    absl::MutexLock lock(&fake_.state().mu);
    fake_.state().delay = absl::Milliseconds(20);  // at most 50 requests/s on one worker
  }
  LoadOptions options;
  options.model = "blur";
  options.rate = 1000;
  options.duration = absl::Milliseconds(100);  // 100 requests scheduled
  options.warmup = absl::ZeroDuration();
  const absl::Time start = absl::Now();
  absl::StatusOr<LoadReport> report = RunLoad(fake_.InProcessChannel(), 3, options);
  const double elapsed = absl::ToDoubleSeconds(absl::Now() - start);
  ASSERT_THAT(report, IsOk());
  EXPECT_EQ(report->errors, 0);
  // About 100 scheduled (the last may fall either side of the end on a loaded machine).
  EXPECT_GE(report->requests, 95);
  EXPECT_LE(report->requests, 101);
  EXPECT_GE(report->seconds, report->requests * 0.020 * 0.9);  // answers 20 ms apart
  EXPECT_LE(report->seconds, elapsed);
  EXPECT_LT(report->requests_per_second(), 60);  // not the 1000/s asked for
}

// With a request budget and no time limit, the load runs until the budget is spent.
TEST_F(LoadGeneratorTest, ARequestBudgetWithoutADurationRunsUntilItIsSpent) {
  {
    absl::MutexLock lock(&fake_.state().mu);
    fake_.state().delay = absl::Milliseconds(5);
  }
  LoadOptions options;
  options.model = "blur";
  options.requests = 30;
  options.duration = absl::InfiniteDuration();
  options.warmup = absl::ZeroDuration();
  absl::StatusOr<LoadReport> report = RunLoad(fake_.InProcessChannel(), 3, options);
  ASSERT_THAT(report, IsOk());
  EXPECT_EQ(report->requests, 30);
  EXPECT_GE(report->seconds, 30 * 0.005 * 0.9);
  // A duration shorter than the budget needs still stops it.
  options.duration = absl::Milliseconds(50);
  report = RunLoad(fake_.InProcessChannel(), 3, options);
  ASSERT_THAT(report, IsOk());
  EXPECT_LT(report->requests, 30);
}

}  // namespace
}  // namespace invnet::client
