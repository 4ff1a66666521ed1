// The bounds on open WatchTrainingJob streams (--max_watch_streams in total,
// --max_watch_streams_per_connection from one connection): each open stream holds a thread of
// the synchronous server, so one stream beyond a bound is refused RESOURCE_EXHAUSTED, naming
// the flag, and a slot frees when a stream ends.

#include <memory>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "invnet/v1/training_service.grpc.pb.h"
#include "server/server.h"
#include "tests/testing/test_server.h"
#include "tests/testing/train_requests.h"

namespace invnet::server {
namespace {

using ::testing::HasSubstr;

constexpr int kMaxStreams = 3;

struct Watch {
  grpc::ClientContext context;
  std::unique_ptr<grpc::ClientReader<v1::WatchTrainingJobResponse>> reader;
};

class WatchLimitTest : public ::testing::Test {
 protected:
  // Each test starts the server with its per-connection bound.
  void StartServer(int per_connection) {
    ServerOptions options;
    options.max_watch_streams = kMaxStreams;
    options.max_watch_streams_per_connection = per_connection;
    server_ = invnet::testing::TestServer::Start(options);
    ASSERT_NE(server_, nullptr);
    // A job that runs far longer than the test, so that its streams stay open.
    grpc::ClientContext context;
    v1::TrainResponse response;
    ASSERT_TRUE(server_->training()
                    .Train(&context,
                           invnet::testing::SmallTrainRequest("long", v1::LOSS_DIVERGENCE, 1000000),
                           &response)
                    .ok());
    job_id_ = response.job().job_id();
  }

  void TearDown() override {
    if (server_ != nullptr) server_->CancelJob(job_id_);
  }

  std::unique_ptr<Watch> OpenWatch() { return OpenWatchOn(server_->training()); }

  std::unique_ptr<Watch> OpenWatchOn(v1::TrainingService::Stub& stub) {
    auto watch = std::make_unique<Watch>();
    watch->context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(60)));
    v1::WatchTrainingJobRequest request;
    request.set_job_id(job_id_);
    watch->reader = stub.WatchTrainingJob(&watch->context, request);
    return watch;
  }

  // A stub on a TCP connection of its own (not shared with other channels to the server).
  std::unique_ptr<v1::TrainingService::Stub> StubOnItsOwnConnection() {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    return v1::TrainingService::NewStub(
        grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", server_->port()),
                                  grpc::InsecureChannelCredentials(), args));
  }

  // The stream's first update (it holds a slot), or its refusal.
  static grpc::Status FirstUpdate(Watch& watch) {
    v1::WatchTrainingJobResponse update;
    if (watch.reader->Read(&update)) return grpc::Status::OK;
    return watch.reader->Finish();
  }

  // Cancels the stream and returns its status.
  static grpc::Status Close(Watch& watch) {
    watch.context.TryCancel();
    return watch.reader->Finish();
  }

  std::unique_ptr<invnet::testing::TestServer> server_;
  std::string job_id_;
};

TEST_F(WatchLimitTest, OneStreamBeyondTheBoundIsRefusedUntilOneCloses) {
  StartServer(/*per_connection=*/kMaxStreams);
  std::vector<std::unique_ptr<Watch>> open;
  for (int i = 0; i < kMaxStreams; ++i) {
    open.push_back(OpenWatch());
    v1::WatchTrainingJobResponse update;
    ASSERT_TRUE(open.back()->reader->Read(&update)) << "stream " << i;  // it holds its slot
    EXPECT_EQ(update.job().job_id(), job_id_);
  }
  std::unique_ptr<Watch> refused = OpenWatch();
  v1::WatchTrainingJobResponse update;
  EXPECT_FALSE(refused->reader->Read(&update));
  const grpc::Status status = refused->reader->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << status.error_message();
  EXPECT_THAT(status.error_message(), HasSubstr("--max_watch_streams"));

  // Closing one frees its slot once its handler has noticed (within its half-second wake-up).
  EXPECT_EQ(Close(*open.front()).error_code(), grpc::StatusCode::CANCELLED);
  open.erase(open.begin());
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  bool admitted = false;
  while (!admitted && absl::Now() < deadline) {
    std::unique_ptr<Watch> next = OpenWatch();
    if (next->reader->Read(&update)) {
      admitted = true;
      open.push_back(std::move(next));
    } else {
      EXPECT_EQ(next->reader->Finish().error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
    }
  }
  EXPECT_TRUE(admitted) << "no slot freed after a stream closed";
  for (auto& watch : open) Close(*watch);
}

TEST_F(WatchLimitTest, OneConnectionCannotTakeEverySlot) {
  StartServer(/*per_connection=*/2);
  auto first = StubOnItsOwnConnection();
  auto second = StubOnItsOwnConnection();
  std::vector<std::unique_ptr<Watch>> open;
  for (int i = 0; i < 2; ++i) {
    open.push_back(OpenWatchOn(*first));
    ASSERT_TRUE(FirstUpdate(*open.back()).ok()) << "stream " << i;
  }
  std::unique_ptr<Watch> third_on_first = OpenWatchOn(*first);
  const grpc::Status refused = FirstUpdate(*third_on_first);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << refused.error_message();
  EXPECT_THAT(refused.error_message(), HasSubstr("--max_watch_streams_per_connection"));
  // Another connection still gets the last slot of the total ...
  open.push_back(OpenWatchOn(*second));
  ASSERT_TRUE(FirstUpdate(*open.back()).ok());
  // ... and then the total bound refuses it too.
  std::unique_ptr<Watch> beyond_total = OpenWatchOn(*second);
  const grpc::Status full = FirstUpdate(*beyond_total);
  EXPECT_EQ(full.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(full.error_message(), HasSubstr("--max_watch_streams)"));
  for (auto& watch : open) Close(*watch);
}

}  // namespace
}  // namespace invnet::server
