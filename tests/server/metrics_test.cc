// The metrics registry: RPC names, histogram buckets and the text exposition format.

#include "server/metrics.h"

#include <regex>
#include <set>
#include <thread>
#include <vector>

#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/http_client.h"

namespace invnet::server {
namespace {

using ::invnet::testing::ParseSamples;
using ::testing::HasSubstr;
using ::testing::Optional;

TEST(RpcFromMethodTest, MapsTheInvnetMethodsAndNothingElse) {
  EXPECT_THAT(RpcFromMethod("/invnet.v1.ReconstructionService/Reconstruct"),
              Optional(Rpc::kReconstruct));
  EXPECT_THAT(RpcFromMethod("/invnet.v1.TrainingService/WatchTrainingJob"),
              Optional(Rpc::kWatchTrainingJob));
  EXPECT_THAT(RpcFromMethod("/invnet.v1.DatasetService/DeleteDataset"),
              Optional(Rpc::kDeleteDataset));
  for (int i = 0; i < kNumRpcs; ++i) {
    const Rpc rpc = static_cast<Rpc>(i);
    EXPECT_FALSE(RpcName(rpc).empty());
  }
  EXPECT_EQ(RpcFromMethod("/grpc.health.v1.Health/Check"), absl::nullopt);
  EXPECT_EQ(RpcFromMethod("/invnet.v1.ModelService/Reconstruct"), absl::nullopt);
  EXPECT_EQ(RpcFromMethod("/invnet.v1.ModelService"), absl::nullopt);
  EXPECT_EQ(RpcFromMethod(""), absl::nullopt);
}

TEST(HistogramTest, BucketsAreCumulativeAndUpperBoundsInclusive) {
  Histogram histogram({1, 2, 5});
  for (double v : {0.5, 1.0, 1.5, 2.0, 5.0, 7.0}) histogram.Observe(v);
  std::string out;
  histogram.AppendTo(&out, "h", "rpc=\"X\"");
  const auto samples = ParseSamples(out);
  EXPECT_EQ(samples.at("h_bucket{rpc=\"X\",le=\"1\"}"), 2);
  EXPECT_EQ(samples.at("h_bucket{rpc=\"X\",le=\"2\"}"), 4);
  EXPECT_EQ(samples.at("h_bucket{rpc=\"X\",le=\"5\"}"), 5);
  EXPECT_EQ(samples.at("h_bucket{rpc=\"X\",le=\"+Inf\"}"), 6);
  EXPECT_EQ(samples.at("h_count{rpc=\"X\"}"), 6);
  EXPECT_DOUBLE_EQ(samples.at("h_sum{rpc=\"X\"}"), 17.0);
  EXPECT_EQ(histogram.count(), 6);
}

TEST(HistogramTest, ObserveAllEqualsObservingOneByOne) {
  const std::vector<int64_t> values = {1, 1, 3, 3, 3, 9, 2, 1000, 0, 4};
  Histogram all({1, 2, 3, 5, 10});
  Histogram each({1, 2, 3, 5, 10});
  all.ObserveAll(values.data(), static_cast<int64_t>(values.size()));
  for (int64_t v : values) each.Observe(static_cast<double>(v));
  std::string a, b;
  all.AppendTo(&a, "h", "");
  each.AppendTo(&b, "h", "");
  EXPECT_EQ(a, b);
  all.ObserveAll(values.data(), 0);
  EXPECT_EQ(all.count(), static_cast<int64_t>(values.size()));
}

TEST(HistogramTest, ConcurrentObservationsAreAllCounted) {
  Histogram histogram(LatencyBounds());
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 10000; ++i) histogram.Observe(1e-3);
    });
  }
  for (auto& thread : threads) thread.join();
  std::string out;
  histogram.AppendTo(&out, "h", "");
  const auto samples = ParseSamples(out);
  EXPECT_EQ(samples.at("h_count"), 40000);
  EXPECT_NEAR(samples.at("h_sum"), 40.0, 1e-6);
  EXPECT_EQ(samples.at("h_bucket{le=\"0.0005\"}"), 0);
  EXPECT_EQ(samples.at("h_bucket{le=\"0.001\"}"), 40000);
}

TEST(ServerMetricsTest, CountsCallsByRpcAndCode) {
  ServerMetrics metrics;
  metrics.RecordRpc(Rpc::kReconstruct, 0, absl::Milliseconds(2));
  metrics.RecordRpc(Rpc::kReconstruct, 0, absl::Milliseconds(3));
  metrics.RecordRpc(Rpc::kReconstruct, 3, absl::Microseconds(80));
  metrics.RecordRpc(Rpc::kGetModel, 5, absl::Microseconds(10));
  metrics.RecordRpc(Rpc::kGetModel, 99, absl::Microseconds(10));  // not a code: UNKNOWN
  const auto samples = ParseSamples(metrics.Render());
  EXPECT_EQ(samples.at("invnet_requests_total{rpc=\"Reconstruct\",code=\"OK\"}"), 2);
  EXPECT_EQ(samples.at("invnet_requests_total{rpc=\"Reconstruct\",code=\"INVALID_ARGUMENT\"}"), 1);
  EXPECT_EQ(samples.at("invnet_requests_total{rpc=\"GetModel\",code=\"NOT_FOUND\"}"), 1);
  EXPECT_EQ(samples.at("invnet_requests_total{rpc=\"GetModel\",code=\"UNKNOWN\"}"), 1);
  EXPECT_EQ(samples.at("invnet_requests_total{rpc=\"GetModel\",code=\"OK\"}"), 0);
  // Error codes appear once they occur; OK from the start.
  EXPECT_EQ(samples.count("invnet_requests_total{rpc=\"Forward\",code=\"INTERNAL\"}"), 0u);
  EXPECT_EQ(samples.at("invnet_requests_total{rpc=\"Forward\",code=\"OK\"}"), 0);
  EXPECT_EQ(samples.at("invnet_rpc_duration_seconds_count{rpc=\"Reconstruct\"}"), 3);
  EXPECT_NEAR(samples.at("invnet_rpc_duration_seconds_sum{rpc=\"Reconstruct\"}"), 0.00508, 1e-9);
  EXPECT_EQ(samples.at("invnet_rpc_duration_seconds_bucket{rpc=\"Reconstruct\",le=\"0.0001\"}"), 1);
  EXPECT_EQ(metrics.requests(Rpc::kReconstruct, 0), 2);
}

TEST(ServerMetricsTest, RecordsRowsTimingAndIterations) {
  ServerMetrics metrics;
  metrics.RecordRequestRows(Rpc::kReconstruct, 3);
  metrics.RecordRequestRows(Rpc::kForward, 100);
  metrics.RecordReconstructTiming(absl::Microseconds(100), absl::Milliseconds(4), 7);
  metrics.RecordReconstructTiming(absl::Microseconds(200), absl::Milliseconds(4), 0);
  const int64_t iterations[] = {12, 15, 40};
  metrics.RecordIterations(iterations, 3);
  const auto samples = ParseSamples(metrics.Render());
  EXPECT_EQ(samples.at("invnet_request_rows_sum{rpc=\"Reconstruct\"}"), 3);
  EXPECT_EQ(samples.at("invnet_request_rows_sum{rpc=\"Forward\"}"), 100);
  EXPECT_EQ(samples.at("invnet_request_rows_bucket{rpc=\"Forward\",le=\"64\"}"), 0);
  EXPECT_EQ(samples.at("invnet_request_rows_bucket{rpc=\"Forward\",le=\"128\"}"), 1);
  EXPECT_EQ(samples.at("invnet_reconstruct_queue_seconds_count"), 2);
  EXPECT_NEAR(samples.at("invnet_reconstruct_queue_seconds_sum"), 300e-6, 1e-12);
  EXPECT_EQ(samples.at("invnet_reconstruct_solve_seconds_count"), 2);
  // Only the solve's leader counts it.
  EXPECT_EQ(samples.at("invnet_reconstruct_batch_rows_count"), 1);
  EXPECT_EQ(samples.at("invnet_reconstruct_batch_rows_sum"), 7);
  EXPECT_EQ(samples.at("invnet_reconstruct_iterations_count"), 3);
  EXPECT_EQ(samples.at("invnet_reconstruct_iterations_sum"), 67);
  EXPECT_EQ(samples.at("invnet_reconstruct_iterations_bucket{le=\"15\"}"), 2);
  EXPECT_GT(samples.at("invnet_process_resident_memory_bytes"), 1 << 20);
}

// Every sample belongs to a family with one HELP and one TYPE line before it, every name
// starts with invnet_, and every line is well formed.
TEST(ServerMetricsTest, RendersTheTextFormat) {
  ServerMetrics metrics;
  metrics.RecordRpc(Rpc::kTrain, 8, absl::Milliseconds(1));
  metrics.AddCollector([](std::string* out) {
    AppendGauge(out, "invnet_test_gauge", "A gauge for the test.", 2.5);
    AppendHeader(out, "invnet_test_labeled", "Labeled.", "gauge");
    AppendSample(out, "invnet_test_labeled",
                 absl::StrCat("job_id=\"", EscapeLabelValue("a\"b\\c\nd"), "\""), 1);
  });
  const std::string text = metrics.Render();
  EXPECT_THAT(text, HasSubstr("invnet_test_gauge 2.5\n"));
  EXPECT_THAT(text, HasSubstr("invnet_test_labeled{job_id=\"a\\\"b\\\\c\\nd\"} 1\n"));
  const std::regex sample(
      R"re(^([a-z_]+)(\{([a-z_]+="([^"\\]|\\.)*")(,[a-z_]+="([^"\\]|\\.)*")*\})? -?[0-9.e+-]+$)re");
  const std::regex help(R"(^# HELP ([a-z_]+) \S.*$)");
  const std::regex type(R"(^# TYPE ([a-z_]+) (counter|gauge|histogram)$)");
  std::set<std::string> helped, typed;
  std::string family;
  for (absl::string_view view : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    const std::string line(view);
    std::smatch match;
    if (std::regex_match(line, match, help)) {
      EXPECT_TRUE(helped.insert(match[1]).second) << "two HELP lines: " << line;
      family = match[1];
    } else if (std::regex_match(line, match, type)) {
      EXPECT_TRUE(typed.insert(match[1]).second) << "two TYPE lines: " << line;
      EXPECT_EQ(match[1], family) << "TYPE without HELP: " << line;
    } else {
      ASSERT_TRUE(std::regex_match(line, match, sample)) << "malformed: " << line;
      const std::string name = match[1];
      EXPECT_EQ(name.rfind("invnet_", 0), 0u) << line;
      const bool in_family = name == family || name == family + "_bucket" ||
                             name == family + "_sum" || name == family + "_count";
      EXPECT_TRUE(in_family) << line << " after # TYPE " << family;
    }
  }
  for (const char* name :
       {"invnet_requests_total", "invnet_rpc_duration_seconds", "invnet_reconstruct_queue_seconds",
        "invnet_reconstruct_solve_seconds", "invnet_request_rows", "invnet_reconstruct_batch_rows",
        "invnet_reconstruct_iterations", "invnet_process_resident_memory_bytes",
        "invnet_test_gauge"}) {
    EXPECT_EQ(typed.count(name), 1u) << name;
  }
}

}  // namespace
}  // namespace invnet::server
