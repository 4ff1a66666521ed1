// A call whose client gives up (deadline passed or cancelled) stops computing: measured by the
// CPU time the process spends on it, from the call until the server has drained every handler,
// against what the whole computation costs. (The returned code alone shows nothing: gRPC
// answers DEADLINE_EXCEEDED at the deadline whether or not the handler goes on computing.)

#include <sys/resource.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include <grpcpp/grpcpp.h>

#include "gtest/gtest.h"
#include "invnet/v1/reconstruction_service.grpc.pb.h"
#include "invnet/v1/training_service.grpc.pb.h"
#include "server/server.h"
#include "tests/testing/test_server.h"
#include "tests/testing/train_requests.h"

namespace invnet::server {
namespace {

using ::invnet::testing::SmallTrainRequest;

double ProcessCpuSeconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  auto seconds = [](const timeval& t) { return t.tv_sec + 1e-6 * t.tv_usec; };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

v1::Tensor Batch(int64_t rows, int64_t cols) {
  v1::Tensor t;
  t.add_shape(rows);
  t.add_shape(cols);
  t.mutable_values()->Reserve(static_cast<int>(rows * cols));
  for (int64_t i = 0; i < rows * cols; ++i) {
    t.add_values(0.8f * std::sin(0.7f * static_cast<float>(i) + 0.3f));
  }
  return t;
}

// Every test has a server of its own: destroying it waits for its in-flight handlers, so the
// CPU time measured up to then includes whatever an abandoned handler went on computing.
class AbandonedCallTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ServerOptions options;
    options.shutdown_grace = absl::Seconds(60);  // a handler that does not stop is waited for
    server_ = invnet::testing::TestServer::Start(options);
    ASSERT_NE(server_, nullptr);
  }

  void Train(const v1::TrainRequest& request) {
    const v1::TrainingJob last = server_->TrainAndWait(request);
    ASSERT_EQ(last.state(), v1::JOB_STATE_SUCCEEDED) << last.error();
  }

  using Call = std::function<grpc::Status(grpc::ClientContext*)>;

  // CPU seconds of one call, which `call` makes with `context`, until the server has drained.
  double CpuOfCall(const Call& call, std::chrono::milliseconds deadline, grpc::StatusCode* code) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + deadline);
    const double before = ProcessCpuSeconds();
    *code = call(&context).error_code();
    server_->server().Shutdown();  // returns once every handler has returned
    return ProcessCpuSeconds() - before;
  }

  // CPU seconds of the same call completed, on 1/scale of the rows, scaled to all of them.
  double CpuOfFullCall(const Call& call, double scale) {
    grpc::ClientContext context;
    const double before = ProcessCpuSeconds();
    grpc::Status status = call(&context);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return (ProcessCpuSeconds() - before) * scale;
  }

  // `call_for(rows)` with a deadline costs under a quarter of the CPU time the whole call
  // would (measured on rows / scale, which must cost clearly more than the deadline).
  void ExpectStopsAtTheDeadline(const std::function<Call(int64_t)>& call_for, int64_t rows,
                                int64_t scale, const char* what) {
    const double full = CpuOfFullCall(call_for(rows / scale), static_cast<double>(scale));
    ASSERT_GT(full, 1.0) << what << " must cost clearly more than the deadline";
    grpc::StatusCode code;
    const double abandoned = CpuOfCall(call_for(rows), kDeadline, &code);
    EXPECT_EQ(code, grpc::DEADLINE_EXCEEDED);
    EXPECT_LT(abandoned, 0.25 * full) << what << ": " << full << " s of CPU in full";
    std::printf("%s: %.2f s of CPU in full; abandoned: %.2f s\n", what, full, abandoned);
  }

  static constexpr std::chrono::milliseconds kDeadline{200};

  std::unique_ptr<invnet::testing::TestServer> server_;
};

TEST_F(AbandonedCallTest, ReconstructStopsAtTheDeadline) {
  Train(SmallTrainRequest("toy", v1::LOSS_APPROXIMATION, 40, /*hidden_width=*/64));
  // An ordinary request: every sample converges within a few dozen iterations per block.
  auto reconstruct = [this](int64_t rows) {
    return [this, rows](grpc::ClientContext* context) {
      v1::ReconstructRequest request;
      request.set_model("toy");
      *request.mutable_measurements() = Batch(rows, 2);
      v1::ReconstructResponse response;
      return server_->reconstruction().Reconstruct(context, request, &response);
    };
  };
  ExpectStopsAtTheDeadline(reconstruct, 1000000, 10, "Reconstruct");
}

TEST_F(AbandonedCallTest, EstimateStopsAtTheDeadline) {
  Train(SmallTrainRequest("toy", v1::LOSS_APPROXIMATION, 2));
  auto estimate = [this](int64_t rows) {
    return [this, rows](grpc::ClientContext* context) {
      v1::EstimateRequest request;
      request.set_model("toy");
      *request.mutable_measurements() = Batch(rows, 2);
      v1::EstimateResponse response;
      return server_->reconstruction().Estimate(context, request, &response);
    };
  };
  ExpectStopsAtTheDeadline(estimate, 1000000, 50, "Estimate");
}

TEST_F(AbandonedCallTest, CancelledForwardStops) {
  // A wide network: phi of a sample costs about a million multiply-adds.
  v1::TrainRequest wide = SmallTrainRequest("wide", v1::LOSS_APPROXIMATION, 2, 512);
  wide.mutable_architecture()->set_num_blocks(4);
  Train(wide);
  auto forward = [this](int64_t rows) {
    return [this, rows](grpc::ClientContext* context) {
      v1::ForwardRequest request;
      request.set_model("wide");
      *request.mutable_signals() = Batch(rows, 2);
      v1::ForwardResponse response;
      return server_->reconstruction().Forward(context, request, &response);
    };
  };
  constexpr int64_t kRows = 100000;
  const double full = CpuOfFullCall(forward(kRows / 50), 50.0);
  ASSERT_GT(full, 1.0) << "the full forward pass must cost clearly more than the wait";
  // Cancelled by the client (not by a deadline) after 200 ms.
  grpc::ClientContext context;
  const double before = ProcessCpuSeconds();
  std::thread canceller([&context] {
    std::this_thread::sleep_for(kDeadline);  // the client's own delay, not a wait for a server
    context.TryCancel();
  });
  v1::ForwardRequest request;
  request.set_model("wide");
  *request.mutable_signals() = Batch(kRows, 2);
  v1::ForwardResponse response;
  grpc::Status status = server_->reconstruction().Forward(&context, request, &response);
  canceller.join();
  server_->server().Shutdown();
  const double abandoned = ProcessCpuSeconds() - before;
  EXPECT_EQ(status.error_code(), grpc::CANCELLED) << status.error_message();
  EXPECT_LT(abandoned, 0.25 * full) << "full forward " << full << " s of CPU";
  std::printf("full forward: %.2f s of CPU; abandoned: %.2f s\n", full, abandoned);
}

TEST_F(AbandonedCallTest, DrawTestPairsStopsAtTheDeadline) {
  // blur64: a pair costs a 64-D Gaussian draw and a 64 x 64 blur; half a million cost seconds.
  v1::TrainRequest request = SmallTrainRequest("blur", v1::LOSS_APPROXIMATION, 2);
  request.set_preset("blur64");
  Train(request);
  auto draw = [this](int64_t count) {
    return [this, count](grpc::ClientContext* context) {
      v1::DrawTestPairsRequest pairs;
      pairs.set_model("blur");
      pairs.set_count(count);
      v1::DrawTestPairsResponse response;
      return server_->reconstruction().DrawTestPairs(context, pairs, &response);
    };
  };
  ExpectStopsAtTheDeadline(draw, 500000, 10, "DrawTestPairs");  // the most --max_message_mb allows
}

}  // namespace
}  // namespace invnet::server
