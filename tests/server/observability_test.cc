// Metrics, request ids and error logs of a real server (Server::Start on port 0, with the
// metrics exporter on port 0), driven over TCP and scraped over real HTTP.

#include <glog/logging.h>
#include <grpcpp/grpcpp.h>

#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "invnet/v1/model_service.grpc.pb.h"
#include "invnet/v1/reconstruction_service.grpc.pb.h"
#include "invnet/v1/training_service.grpc.pb.h"
#include "server/server.h"
#include "tests/testing/http_client.h"
#include "tests/testing/log_sink.h"
#include "tests/testing/test_server.h"
#include "tests/testing/train_requests.h"

namespace invnet::server {
namespace {

using ::invnet::testing::CapturingSink;
using ::invnet::testing::HttpExchange;
using ::invnet::testing::HttpGet;
using ::invnet::testing::HttpResponse;
using ::invnet::testing::ParseSamples;
using ::invnet::testing::SmallTrainRequest;
using ::testing::HasSubstr;
using ::testing::MatchesRegex;

using Samples = std::map<std::string, double>;

v1::Tensor Batch(int64_t rows, int64_t cols) {
  v1::Tensor t;
  t.add_shape(rows);
  t.add_shape(cols);
  for (int64_t i = 0; i < rows * cols; ++i) t.add_values(0.5f * std::sin(0.7f * i + 0.3f));
  return t;
}

// The sample `key` of a scrape, 0 when absent (a counter that never moved).
double Get(const Samples& samples, const std::string& key) {
  auto it = samples.find(key);
  return it == samples.end() ? 0 : it->second;
}

double Delta(const Samples& before, const Samples& after, const std::string& key) {
  return Get(after, key) - Get(before, key);
}

class ObservabilityTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ServerOptions options;
    options.metrics_address = "127.0.0.1:0";
    server_ = invnet::testing::TestServer::Start(options).release();
    ASSERT_NE(server_, nullptr);
    ASSERT_GT(server_->server().metrics_port(), 0);
    ASSERT_NE(server_->server().metrics_port(), server_->port());
    const v1::TrainingJob done =
        server_->TrainAndWait(SmallTrainRequest("toy", v1::LOSS_DIVERGENCE, 40));
    ASSERT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED) << done.error();
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }

  void SetUp() override {
    channel_ = grpc::CreateChannel(absl::StrCat("127.0.0.1:", server_->port()),
                                   grpc::InsecureChannelCredentials());
    reconstruction_ = v1::ReconstructionService::NewStub(channel_);
    training_ = v1::TrainingService::NewStub(channel_);
    models_ = v1::ModelService::NewStub(channel_);
  }

  static Samples Scrape() {
    absl::StatusOr<HttpResponse> response = HttpGet(server_->server().metrics_port(), "/metrics");
    EXPECT_TRUE(response.ok()) << response.status();
    if (!response.ok()) return {};
    EXPECT_EQ(response->status, 200) << response->head;
    EXPECT_THAT(response->head, HasSubstr("text/plain; version=0.0.4"));
    return ParseSamples(response->body);
  }

  grpc::Status Reconstruct(int64_t rows, int64_t cols, v1::ReconstructResponse* response,
                           const std::string& request_id = "") {
    grpc::ClientContext context;
    if (!request_id.empty()) context.AddMetadata("x-request-id", request_id);
    v1::ReconstructRequest request;
    request.set_model("toy");
    *request.mutable_measurements() = Batch(rows, cols);
    return reconstruction_->Reconstruct(&context, request, response);
  }

  // GetModel with `request_id` ("": none): the status and the id the server answered with.
  std::pair<grpc::Status, std::string> GetModel(const std::string& name,
                                                const std::string& request_id) {
    grpc::ClientContext context;
    if (!request_id.empty()) context.AddMetadata("x-request-id", request_id);
    v1::GetModelRequest request;
    request.set_name(name);
    v1::GetModelResponse response;
    grpc::Status status = models_->GetModel(&context, request, &response);
    const auto& metadata = context.GetServerInitialMetadata();
    auto it = metadata.find("x-request-id");
    std::string echoed =
        it == metadata.end() ? "" : std::string(it->second.data(), it->second.size());
    EXPECT_EQ(metadata.count("x-request-id"), it == metadata.end() ? 0u : 1u);
    return {status, echoed};
  }

  static invnet::testing::TestServer* server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::ReconstructionService::Stub> reconstruction_;
  std::unique_ptr<v1::TrainingService::Stub> training_;
  std::unique_ptr<v1::ModelService::Stub> models_;
};

invnet::testing::TestServer* ObservabilityTest::server_ = nullptr;

TEST_F(ObservabilityTest, CountersAndHistogramsMoveByExactlyTheCallsMade) {
  const Samples before = Scrape();
  int64_t iterations = 0;
  for (int64_t rows : {1, 3, 5}) {
    v1::ReconstructResponse response;
    grpc::Status status = Reconstruct(rows, 2, &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
    for (int64_t it : response.iterations()) iterations += it;
  }
  v1::ReconstructResponse bad;
  EXPECT_EQ(Reconstruct(2, 3, &bad).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  {
    grpc::ClientContext context;
    v1::ForwardRequest request;
    request.set_model("toy");
    *request.mutable_signals() = Batch(4, 2);
    v1::ForwardResponse response;
    ASSERT_TRUE(reconstruction_->Forward(&context, request, &response).ok());
  }
  const Samples after = Scrape();

  const std::string rpc = "{rpc=\"Reconstruct\"}";
  EXPECT_EQ(Delta(before, after, "invnet_requests_total{rpc=\"Reconstruct\",code=\"OK\"}"), 3);
  EXPECT_EQ(
      Delta(before, after, "invnet_requests_total{rpc=\"Reconstruct\",code=\"INVALID_ARGUMENT\"}"),
      1);
  EXPECT_EQ(Delta(before, after, "invnet_requests_total{rpc=\"Forward\",code=\"OK\"}"), 1);
  EXPECT_EQ(Delta(before, after, "invnet_rpc_duration_seconds_count" + rpc), 4);
  EXPECT_EQ(Delta(before, after,
                  "invnet_rpc_duration_seconds_bucket{rpc=\"Reconstruct\","
                  "le=\"+Inf\"}"),
            4);
  EXPECT_GT(Delta(before, after, "invnet_rpc_duration_seconds_sum" + rpc), 0);
  EXPECT_EQ(Delta(before, after, "invnet_rpc_duration_seconds_count{rpc=\"Forward\"}"), 1);
  // Rows: the failed request never had a valid batch.
  EXPECT_EQ(Delta(before, after, "invnet_request_rows_count" + rpc), 3);
  EXPECT_EQ(Delta(before, after, "invnet_request_rows_sum" + rpc), 9);
  EXPECT_EQ(Delta(before, after, "invnet_request_rows_count{rpc=\"Forward\"}"), 1);
  EXPECT_EQ(Delta(before, after, "invnet_request_rows_sum{rpc=\"Forward\"}"), 4);
  // Queue and solve, once per solved request; one merged solve per request (one at a time).
  EXPECT_EQ(Delta(before, after, "invnet_reconstruct_queue_seconds_count"), 3);
  EXPECT_EQ(Delta(before, after, "invnet_reconstruct_solve_seconds_count"), 3);
  EXPECT_GT(Delta(before, after, "invnet_reconstruct_solve_seconds_sum"), 0);
  EXPECT_GE(Delta(before, after, "invnet_reconstruct_queue_seconds_sum"), 0);
  EXPECT_EQ(Delta(before, after, "invnet_reconstruct_batch_rows_count"), 3);
  EXPECT_EQ(Delta(before, after, "invnet_reconstruct_batch_rows_sum"), 9);
  EXPECT_EQ(Delta(before, after, "invnet_reconstruct_iterations_count"), 9);
  EXPECT_EQ(Delta(before, after, "invnet_reconstruct_iterations_sum"), iterations);
  EXPECT_GT(iterations, 9);
}

TEST_F(ObservabilityTest, GaugesDescribeModelsJobsAndMemory) {
  Samples samples = Scrape();
  EXPECT_EQ(Get(samples, "invnet_models_loaded"), 1);
  EXPECT_EQ(samples.at("invnet_training_jobs{state=\"SUCCEEDED\"}"), 1);
  EXPECT_EQ(samples.at("invnet_training_jobs{state=\"RUNNING\"}"), 0);
  EXPECT_EQ(samples.at("invnet_training_jobs{state=\"FAILED\"}"), 0);
  EXPECT_GT(Get(samples, "invnet_process_resident_memory_bytes"), 20 << 20);

  // A long job shows up as RUNNING with its step, and goes when cancelled.
  grpc::ClientContext context;
  v1::TrainResponse response;
  ASSERT_TRUE(training_->Train(&context, SmallTrainRequest("long", v1::LOSS_DIVERGENCE, 1000000), &response).ok());
  const std::string id = response.job().job_id();
  const std::string step =
      absl::StrCat("invnet_training_job_step{job_id=\"", id, "\",model=\"long\"}");
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  while (absl::Now() < deadline) {
    samples = Scrape();
    if (Get(samples, step) > 0) break;
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_GT(Get(samples, step), 0);
  EXPECT_EQ(Get(samples, "invnet_training_jobs{state=\"RUNNING\"}"), 1);
  EXPECT_EQ(Get(samples, absl::StrCat("invnet_training_job_total_steps{job_id=\"", id,
                                      "\",model=\"long\"}")),
            1000000);
  grpc::ClientContext cancel_context;
  v1::CancelTrainingJobRequest cancel;
  cancel.set_job_id(id);
  v1::CancelTrainingJobResponse cancelled;
  ASSERT_TRUE(training_->CancelTrainingJob(&cancel_context, cancel, &cancelled).ok());
  server_->WaitForJob(id);
  samples = Scrape();
  EXPECT_EQ(samples.count(step), 0u);
  EXPECT_EQ(Get(samples, "invnet_training_jobs{state=\"CANCELLED\"}"), 1);
  EXPECT_EQ(Get(samples, "invnet_training_jobs{state=\"RUNNING\"}"), 0);
  EXPECT_EQ(Get(samples, "invnet_models_loaded"), 1);
}

// A Watch whose client goes away ends on the server within its half-second poll: the handler
// returns (counted as CANCELLED) instead of holding a thread until the job ends.
TEST_F(ObservabilityTest, AnAbandonedWatchEndsOnTheServer) {
  const std::string cancelled_watches =
      "invnet_requests_total{rpc=\"WatchTrainingJob\",code=\"CANCELLED\"}";
  const Samples before = Scrape();
  grpc::ClientContext context;
  v1::TrainResponse response;
  ASSERT_TRUE(
      training_->Train(&context, SmallTrainRequest("watched-long", v1::LOSS_DIVERGENCE, 1000000), &response).ok());
  {
    grpc::ClientContext watch_context;
    v1::WatchTrainingJobRequest request;
    request.set_job_id(response.job().job_id());
    auto reader = training_->WatchTrainingJob(&watch_context, request);
    v1::WatchTrainingJobResponse update;
    ASSERT_TRUE(reader->Read(&update));
    watch_context.TryCancel();
    while (reader->Read(&update)) {
    }
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  }
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  Samples after = Scrape();
  while (Delta(before, after, cancelled_watches) < 1 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(100));
    after = Scrape();
  }
  EXPECT_EQ(Delta(before, after, cancelled_watches), 1) << "the server still watches";
  grpc::ClientContext cancel_context;
  v1::CancelTrainingJobRequest cancel;
  cancel.set_job_id(response.job().job_id());
  v1::CancelTrainingJobResponse cancelled;
  EXPECT_TRUE(training_->CancelTrainingJob(&cancel_context, cancel, &cancelled).ok());
  server_->WaitForJob(response.job().job_id());
}

TEST_F(ObservabilityTest, ExporterAnswersBadRequestsAndKeepsServing) {
  absl::StatusOr<HttpResponse> response = HttpGet(server_->server().metrics_port(), "/other");
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->status, 404);
  response = HttpExchange(server_->server().metrics_port(), "DELETE /metrics HTTP/1.1\r\n\r\n");
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->status, 405);
  response = HttpExchange(server_->server().metrics_port(), "\x16\x03\x01 not http at all\r\n\r\n");
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->status, 400);
  response = HttpExchange(server_->server().metrics_port(),
                          "GET /metrics HTTP/1.1\r\nX: " + std::string(256 << 10, 'z'));
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_TRUE(response->status == 431 || response->reset) << response->head;
  EXPECT_EQ(Get(Scrape(), "invnet_models_loaded"), 1);
}

TEST_F(ObservabilityTest, RequestIdsAreEchoedOrGenerated) {
  auto [status, echoed] = GetModel("toy", "client-id-42");
  EXPECT_TRUE(status.ok());
  EXPECT_EQ(echoed, "client-id-42");
  // On errors too.
  std::tie(status, echoed) = GetModel("nope", "client-id-43");
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(echoed, "client-id-43");
  // None sent, or one that would not fit on a log line: a fresh one per call.
  std::string first, second, third;
  std::tie(status, first) = GetModel("toy", "");
  std::tie(status, second) = GetModel("nope", "");
  std::tie(status, third) = GetModel("toy", "has a space");
  for (const std::string& id : {first, second, third}) {
    EXPECT_THAT(id, MatchesRegex("[0-9a-f]{16}"));
  }
  EXPECT_NE(first, second);
  EXPECT_NE(second, third);
  // In process as well.
  auto in_process = v1::ModelService::NewStub(server_->InProcessChannel());
  grpc::ClientContext context;
  context.AddMetadata("x-request-id", "in-process-1");
  v1::ListModelsResponse models;
  ASSERT_TRUE(in_process->ListModels(&context, v1::ListModelsRequest(), &models).ok());
  auto it = context.GetServerInitialMetadata().find("x-request-id");
  ASSERT_NE(it, context.GetServerInitialMetadata().end());
  EXPECT_EQ(std::string(it->second.data(), it->second.size()), "in-process-1");
}

TEST_F(ObservabilityTest, EveryErrorIsLoggedOnceWithRpcRequestIdAndCode) {
  CapturingSink sink;
  google::AddLogSink(&sink);
  const grpc::Status not_found = GetModel("nope", "find-me-1").first;
  ASSERT_EQ(not_found.error_code(), grpc::StatusCode::NOT_FOUND);
  v1::ReconstructResponse response;
  grpc::Status bad = Reconstruct(2, 3, &response, "find-me-2");
  ASSERT_EQ(bad.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  ASSERT_TRUE(Reconstruct(1, 2, &response, "find-me-3").ok());
  auto [status, echoed] = GetModel("bad name!", "");
  ASSERT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  google::RemoveLogSink(&sink);

  auto lines = sink.Matching("request_id=find-me-1");
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0].first, google::GLOG_WARNING);
  EXPECT_EQ(lines[0].second, absl::StrCat("GetModel request_id=find-me-1 code=NOT_FOUND: ",
                                          not_found.error_message()));
  lines = sink.Matching("request_id=find-me-2");
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0].first, google::GLOG_WARNING);
  EXPECT_THAT(lines[0].second,
              HasSubstr("Reconstruct request_id=find-me-2 code=INVALID_ARGUMENT: "));
  EXPECT_THAT(lines[0].second, HasSubstr(bad.error_message()));
  EXPECT_TRUE(sink.Matching("find-me-3").empty());  // successes are not logged
  // The generated id of a call without one is the id in its log line.
  lines = sink.Matching(absl::StrCat("request_id=", echoed, " "));
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_THAT(lines[0].second, HasSubstr("GetModel"));
  EXPECT_THAT(lines[0].second, HasSubstr("code=INVALID_ARGUMENT"));
}

TEST(ObservabilityOptionsTest, MetricsAreOffByDefaultAndABadAddressStopsTheStart) {
  const invnet::testing::ScratchDirectory repository("observability_options");
  ServerOptions options;
  options.address = "127.0.0.1:0";
  options.repository = repository.path();
  {
    auto server = Server::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    EXPECT_EQ((*server)->metrics_port(), 0);
  }
  options.metrics_address = "127.0.0.1";
  auto server = Server::Start(options);
  ASSERT_FALSE(server.ok());
  EXPECT_EQ(server.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(server.status().message(), HasSubstr("metrics_address"));
}

}  // namespace
}  // namespace invnet::server
