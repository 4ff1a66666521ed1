#include "client/client.h"

#include <memory>
#include <string>
#include <vector>

#include <grpcpp/test/client_context_test_peer.h>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/client/fake_server.h"
#include "tests/testing/status_matchers.h"

namespace invnet::client {
namespace {

using ::invnet::client::testing::FakeServer;
using ::invnet::client::testing::MakeJob;
using ::invnet::client::testing::MakeModel;
using ::invnet::testing::IsOk;
using ::invnet::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using HealthResponse = grpc::health::v1::HealthCheckResponse;

// The deadline a server sees may exceed the client's timeout slightly: gRPC rounds the timeout
// up when it encodes it on the wire.
constexpr absl::Duration kSlack = absl::Milliseconds(100);

class ClientTest : public ::testing::Test {
 protected:
  ClientTest() : client_(fake_.InProcessChannel()) {
    absl::MutexLock lock(&fake_.state().mu);
    fake_.state().models.push_back(MakeModel("blur", 2, 3, 3));
  }

  InvnetClient ClientWith(ClientOptions options) {
    return InvnetClient(fake_.InProcessChannel(), options);
  }

  FakeServer fake_;
  InvnetClient client_;
};

v1::ReconstructRequest MakeReconstruct(const std::string& model, DenseTensor y) {
  v1::ReconstructRequest request;
  request.set_model(model);
  y.ToProto(request.mutable_measurements());
  return request;
}

TEST(FromGrpcStatusTest, KeepsEveryCodeAndTheMessage) {
  for (int code = 0; code <= 16; ++code) {
    const std::string message = code == 0 ? "" : "why " + std::to_string(code);
    absl::Status status =
        FromGrpcStatus(grpc::Status(static_cast<grpc::StatusCode>(code), message));
    EXPECT_EQ(static_cast<int>(status.code()), code);
    EXPECT_EQ(status.message(), message);
  }
  EXPECT_EQ(absl::StatusCode::kResourceExhausted,
            FromGrpcStatus(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "")).code());
}

TEST(FromGrpcStatusTest, CarriesTheServersRequestId) {
  grpc::ClientContext context;
  grpc::testing::ClientContextTestPeer peer(&context);
  peer.AddServerInitialMetadata("x-request-id", "0123456789abcdef");
  absl::Status status =
      FromGrpcStatus(grpc::Status(grpc::StatusCode::NOT_FOUND, "model 'x' not found"), context);
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(status.message(), "model 'x' not found");
  EXPECT_EQ(RequestIdOf(status), "0123456789abcdef");
  // Without an id (a server without the observer, or no server reached): none.
  grpc::ClientContext bare;
  grpc::testing::ClientContextTestPeer bare_peer(&bare);  // must outlive the lookup
  bare_peer.AddServerInitialMetadata("other", "x");
  EXPECT_EQ(RequestIdOf(FromGrpcStatus(grpc::Status(grpc::StatusCode::UNAVAILABLE, "down"), bare)),
            "");
  EXPECT_EQ(RequestIdOf(absl::OkStatus()), "");
}

TEST_F(ClientTest, ReconstructReturnsTheServersAnswer) {
  absl::StatusOr<v1::ReconstructResponse> response =
      client_.Reconstruct(MakeReconstruct("blur", {{2, 3}, {2, 4, 6, 8, 10, 12}}));
  ASSERT_THAT(response, IsOk());
  EXPECT_EQ(response->version(), 1);
  EXPECT_THAT(response->reconstructions().values(), ElementsAre(1, 2, 3, 4, 5, 6));
  EXPECT_THAT(response->converged(), ElementsAre(true, false));
}

TEST_F(ClientTest, ServerErrorKeepsCodeAndMessage) {
  fake_.FailWith(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                              "measurements: shape [2, 4] does not match m = 3"));
  EXPECT_THAT(client_.Reconstruct(MakeReconstruct("blur", {{2, 4}, std::vector<float>(8)})),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "measurements: shape [2, 4] does not match m = 3"));
  fake_.FailWith(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "too many jobs"));
  EXPECT_THAT(client_.Train(v1::TrainRequest()),
              StatusIs(absl::StatusCode::kResourceExhausted, "too many jobs"));
}

TEST_F(ClientTest, UnknownModelIsNotFound) {
  EXPECT_THAT(client_.Reconstruct(MakeReconstruct("nope", {{1, 1}, {1}})),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("nope")));
  v1::GetModelRequest get;
  get.set_name("nope");
  EXPECT_THAT(client_.GetModel(get), StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(ClientTest, DefaultDeadlinesPerMethod) {
  ASSERT_THAT(client_.ListModels(), IsOk());
  ASSERT_THAT(client_.Reconstruct(MakeReconstruct("blur", {{1, 3}, {1, 2, 3}})), IsOk());
  {
    absl::MutexLock lock(&fake_.state().mu);
    fake_.state().watch_updates = {MakeJob("j", "blur", v1::JOB_STATE_SUCCEEDED, 1, 1)};
  }
  ASSERT_THAT(client_.WatchTrainingJob("j"), IsOk());

  const ClientOptions defaults;
  EXPECT_EQ(defaults.rpc_timeout, absl::Seconds(30));
  const absl::Duration list = fake_.time_left("ListModels");
  EXPECT_GT(list, absl::Seconds(25));
  // gRPC rounds the timeout it sends up to its wire format's precision: allow some slack.
  EXPECT_LE(list, absl::Seconds(30) + kSlack);
  const absl::Duration compute = fake_.time_left("Reconstruct");
  EXPECT_GT(compute, defaults.compute_timeout - absl::Seconds(5));
  EXPECT_LE(compute, defaults.compute_timeout + kSlack);
  EXPECT_EQ(fake_.time_left("WatchTrainingJob"), absl::InfiniteDuration());
}

TEST_F(ClientTest, DrawTestPairsReturnsTheServersPairsWithTheComputeDeadline) {
  v1::DrawTestPairsRequest request;
  request.set_model("blur");
  request.set_count(4);
  request.set_seed(11);
  absl::StatusOr<v1::DrawTestPairsResponse> pairs = client_.DrawTestPairs(request);
  ASSERT_THAT(pairs, IsOk());
  EXPECT_THAT(pairs->signals().shape(), ElementsAre(4, 3));
  EXPECT_THAT(pairs->measurements().shape(), ElementsAre(4, 3));
  EXPECT_EQ(pairs->signals().values(5), testing::FakeSignal(11, 1, 2));
  {
    absl::MutexLock lock(&fake_.state().mu);
    EXPECT_EQ(fake_.state().draw.seed(), 11u);
  }
  EXPECT_GT(fake_.time_left("DrawTestPairs"), ClientOptions().compute_timeout - absl::Seconds(5));
  request.set_model("nope");
  EXPECT_THAT(client_.DrawTestPairs(request), StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(ClientTest, ConfiguredDeadlinesAreApplied) {
  ClientOptions options;
  options.rpc_timeout = absl::Seconds(3);
  options.watch_timeout = absl::Seconds(7);
  options.upload_timeout = absl::InfiniteDuration();
  InvnetClient client = ClientWith(options);
  ASSERT_THAT(client.ListDatasets(), IsOk());
  {
    absl::MutexLock lock(&fake_.state().mu);
    fake_.state().watch_updates = {MakeJob("j", "blur", v1::JOB_STATE_SUCCEEDED, 1, 1)};
  }
  ASSERT_THAT(client.WatchTrainingJob("j"), IsOk());
  ASSERT_THAT(client.UploadDataset("d", {{1, 1}, {1}}), IsOk());
  EXPECT_GT(fake_.time_left("ListDatasets"), absl::Seconds(1));
  EXPECT_LE(fake_.time_left("ListDatasets"), absl::Seconds(3) + kSlack);
  EXPECT_GT(fake_.time_left("WatchTrainingJob"), absl::Seconds(5));
  EXPECT_LE(fake_.time_left("WatchTrainingJob"), absl::Seconds(7) + kSlack);
  EXPECT_EQ(fake_.time_left("UploadDataset"), absl::InfiniteDuration());
}

TEST_F(ClientTest, DeadlineExceededWhenTheServerIsSlow) {
  {
    absl::MutexLock lock(&fake_.state().mu);
    fake_.state().block_until_cancelled = true;
  }
  ClientOptions options;
  options.rpc_timeout = absl::Milliseconds(200);
  InvnetClient client = ClientWith(options);
  const absl::Time start = absl::Now();
  EXPECT_THAT(client.ListTrainingJobs(), StatusIs(absl::StatusCode::kDeadlineExceeded));
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
}

TEST_F(ClientTest, WatchStreamsEveryUpdateInOrder) {
  std::vector<v1::TrainingJob> updates = {
      MakeJob("j1", "blur", v1::JOB_STATE_QUEUED, 0, 100),
      MakeJob("j1", "blur", v1::JOB_STATE_RUNNING, 50, 100),
      MakeJob("j1", "blur", v1::JOB_STATE_SUCCEEDED, 100, 100),
  };
  {
    absl::MutexLock lock(&fake_.state().mu);
    fake_.state().watch_updates = updates;
  }
  std::vector<int64_t> steps;
  absl::StatusOr<v1::TrainingJob> last = client_.WatchTrainingJob(
      "j1", [&](const v1::TrainingJob& job) { steps.push_back(job.step()); });
  ASSERT_THAT(last, IsOk());
  EXPECT_THAT(steps, ElementsAre(0, 50, 100));
  EXPECT_EQ(last->state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(last->published_version(), 1);
}

TEST_F(ClientTest, WatchOfUnknownJobIsNotFound) {
  EXPECT_THAT(client_.WatchTrainingJob("ghost"), StatusIs(absl::StatusCode::kNotFound));
}

// Over the wire: the header, then every value (how the rows are chunked: client_logic_test).
TEST_F(ClientTest, UploadStreamsHeaderAndChunks) {
  DenseTensor samples = DenseTensor::Matrix(10, 3);
  for (size_t i = 0; i < samples.values.size(); ++i) samples.values[i] = static_cast<float>(i);
  absl::StatusOr<v1::Dataset> dataset = client_.UploadDataset("points", samples, 4);
  ASSERT_THAT(dataset, IsOk());
  EXPECT_EQ(dataset->name(), "points");
  EXPECT_EQ(dataset->num_samples(), 10);
  EXPECT_EQ(dataset->dim(), 3);
  absl::MutexLock lock(&fake_.state().mu);
  const auto& messages = fake_.state().upload_messages;
  ASSERT_EQ(messages.size(), 4u);
  EXPECT_EQ(messages[0].header().name(), "points");
  std::vector<float> received;
  for (const auto& m : messages) {
    received.insert(received.end(), m.chunk().values().begin(), m.chunk().values().end());
  }
  EXPECT_EQ(received, samples.values);
}

TEST_F(ClientTest, UploadRejectedAfterTheHeaderReportsTheServersReason) {
  {
    absl::MutexLock lock(&fake_.state().mu);
    v1::Dataset existing;
    existing.set_name("taken");
    fake_.state().datasets.push_back(existing);
  }
  // Many one-row chunks: the server has closed the call long before the client is done.
  EXPECT_THAT(client_.UploadDataset("taken", DenseTensor::Matrix(2000, 4), 1),
              StatusIs(absl::StatusCode::kAlreadyExists, "dataset taken exists"));
}

TEST_F(ClientTest, OtherRpcsPassThrough) {
  {
    absl::MutexLock lock(&fake_.state().mu);
    fake_.state().jobs = {MakeJob("a", "blur", v1::JOB_STATE_RUNNING, 5, 10),
                          MakeJob("b", "blur", v1::JOB_STATE_SUCCEEDED, 10, 10)};
  }
  ASSERT_OK_AND_ASSIGN(v1::ListTrainingJobsResponse jobs, client_.ListTrainingJobs());
  EXPECT_EQ(jobs.jobs_size(), 2);
  v1::GetTrainingJobRequest get;
  get.set_job_id("b");
  ASSERT_OK_AND_ASSIGN(v1::GetTrainingJobResponse job, client_.GetTrainingJob(get));
  EXPECT_EQ(job.job().state(), v1::JOB_STATE_SUCCEEDED);
  v1::CancelTrainingJobRequest cancel;
  cancel.set_job_id("b");
  EXPECT_THAT(client_.CancelTrainingJob(cancel), StatusIs(absl::StatusCode::kFailedPrecondition));
  cancel.set_job_id("a");
  ASSERT_OK_AND_ASSIGN(v1::CancelTrainingJobResponse cancelled, client_.CancelTrainingJob(cancel));
  EXPECT_EQ(cancelled.job().state(), v1::JOB_STATE_CANCELLED);

  v1::TrainRequest train;
  train.set_model_name("new");
  train.mutable_training()->set_steps(7);
  ASSERT_OK_AND_ASSIGN(v1::TrainResponse started, client_.Train(train));
  EXPECT_EQ(started.job().job_id(), "job-1");
  EXPECT_EQ(started.job().total_steps(), 7);

  v1::ForwardRequest forward;
  forward.set_model("blur");
  DenseTensor{{1, 2}, {1, 2}}.ToProto(forward.mutable_signals());
  ASSERT_OK_AND_ASSIGN(v1::ForwardResponse outputs, client_.Forward(forward));
  EXPECT_THAT(outputs.outputs().values(), ElementsAre(2, 4));

  v1::EstimateRequest estimate;
  estimate.set_model("blur");
  estimate.add_estimators(v1::ESTIMATOR_MAP);
  DenseTensor{{1, 2}, {1, 2}}.ToProto(estimate.mutable_measurements());
  ASSERT_OK_AND_ASSIGN(v1::EstimateResponse estimates, client_.Estimate(estimate));
  EXPECT_TRUE(estimates.has_map());
  EXPECT_FALSE(estimates.has_posterior_mean());

  ASSERT_OK_AND_ASSIGN(v1::ListModelsResponse models, client_.ListModels());
  ASSERT_EQ(models.models_size(), 1);
  v1::DeleteModelRequest del;
  del.set_name("blur");
  del.set_version(2);
  EXPECT_THAT(client_.DeleteModel(del), IsOk());
  v1::DeleteDatasetRequest del_dataset;
  del_dataset.set_name("ghost");
  EXPECT_THAT(client_.DeleteDataset(del_dataset), StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(ClientTest, HealthReportsTheServingStatus) {
  ASSERT_OK_AND_ASSIGN(InvnetClient::HealthStatus server, client_.Health());
  EXPECT_EQ(server, HealthResponse::SERVING);
  ASSERT_OK_AND_ASSIGN(InvnetClient::HealthStatus service,
                       client_.Health("invnet.v1.ReconstructionService"));
  EXPECT_EQ(service, HealthResponse::SERVING);
  EXPECT_THAT(client_.Health("no.such.Service"), StatusIs(absl::StatusCode::kNotFound));
  {
    absl::MutexLock lock(&fake_.state().mu);
    fake_.state().health = HealthResponse::NOT_SERVING;
  }
  ASSERT_OK_AND_ASSIGN(InvnetClient::HealthStatus stopping, client_.Health());
  EXPECT_EQ(stopping, HealthResponse::NOT_SERVING);
}

TEST_F(ClientTest, WaitUntilServing) {
  EXPECT_THAT(client_.WaitUntilServing(absl::Seconds(5)), IsOk());
  {
    absl::MutexLock lock(&fake_.state().mu);
    fake_.state().health = HealthResponse::NOT_SERVING;
  }
  EXPECT_THAT(client_.WaitUntilServing(absl::Milliseconds(300)),
              StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr("NOT_SERVING")));
}

TEST(ConnectTest, RejectsBadArguments) {
  EXPECT_THAT(InvnetClient::Connect(""), StatusIs(absl::StatusCode::kInvalidArgument));
  ClientOptions options;
  options.max_message_bytes = 0;
  EXPECT_THAT(InvnetClient::Connect("localhost:1", options),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(ConnectTest, UnreachableServerIsUnavailable) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<InvnetClient> client, InvnetClient::Connect("127.0.0.1:1"));
  EXPECT_THAT(client->Health(), StatusIs(absl::StatusCode::kUnavailable));
}

TEST(ConnectTest, TcpChannelCarriesMessagesAboveGrpcsDefaultLimit) {
  FakeServer fake;
  {
    absl::MutexLock lock(&fake.state().mu);
    fake.state().models.push_back(MakeModel("big", 1, 1024, 1024));
  }
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<InvnetClient> client, InvnetClient::Connect(fake.target()));
  // 6 MiB each way, above gRPC's default 4 MiB receive limit.
  DenseTensor y = DenseTensor::Matrix(1536, 1024);
  y.values.back() = 4;
  ASSERT_OK_AND_ASSIGN(v1::ReconstructResponse response,
                       client->Reconstruct(MakeReconstruct("big", y)));
  EXPECT_EQ(response.reconstructions().values_size(), 1536 * 1024);
  EXPECT_EQ(response.reconstructions().values(1536 * 1024 - 1), 2);
}

}  // namespace
}  // namespace invnet::client
