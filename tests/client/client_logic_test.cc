// What InvnetClient adds on top of the wire, against a gmock connection (no server): Train's
// idempotency key and its one retry, WatchTrainingJob's last update, UploadDataset's chunks and
// argument checks, WaitUntilServing's polling. client_test.cc has the same client over a real
// channel (deadlines, metadata, streams).

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "client/client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/client/mock_connection.h"
#include "tests/testing/status_matchers.h"

namespace invnet::client {
namespace {

using ::invnet::client::testing::MockConnection;
using ::invnet::testing::IsOk;
using ::invnet::testing::StatusIs;
using ::testing::_;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Invoke;
using ::testing::Return;
using ::testing::StrictMock;

class ClientLogicTest : public ::testing::Test {
 protected:
  std::shared_ptr<StrictMock<MockConnection>> connection_ =
      std::make_shared<StrictMock<MockConnection>>();
  InvnetClient client_{std::shared_ptr<InvnetConnection>(connection_)};
};

v1::TrainResponse Started(const std::string& job_id) {
  v1::TrainResponse response;
  response.mutable_job()->set_job_id(job_id);
  return response;
}

TEST_F(ClientLogicTest, TrainRetriesOnceUnderTheSameRequestId) {
  std::vector<std::string> ids;
  EXPECT_CALL(*connection_, Train(_))
      .WillOnce(Invoke([&](const v1::TrainRequest& r) -> absl::StatusOr<v1::TrainResponse> {
        ids.push_back(r.request_id());
        return absl::UnavailableError("connection reset");
      }))
      .WillOnce(Invoke([&](const v1::TrainRequest& r) -> absl::StatusOr<v1::TrainResponse> {
        ids.push_back(r.request_id());
        return Started("job-1");
      }));
  v1::TrainRequest train;
  train.set_model_name("new");
  absl::StatusOr<v1::TrainResponse> started = client_.Train(train);
  ASSERT_THAT(started, IsOk());
  EXPECT_EQ(started->job().job_id(), "job-1");
  ASSERT_EQ(ids.size(), 2u);
  EXPECT_EQ(ids[0].size(), 32u) << ids[0];  // 128 random bits in hex
  EXPECT_EQ(ids[1], ids[0]);                // the retry is the same request
}

TEST_F(ClientLogicTest, TrainKeepsTheCallersRequestIdAndRetriesOnlyOnce) {
  std::vector<std::string> ids;
  EXPECT_CALL(*connection_, Train(_))
      .Times(2)
      .WillRepeatedly(Invoke([&](const v1::TrainRequest& r) -> absl::StatusOr<v1::TrainResponse> {
        ids.push_back(r.request_id());
        return absl::DeadlineExceededError("no answer");
      }));
  v1::TrainRequest train;
  train.set_request_id("my-key");
  EXPECT_THAT(client_.Train(train), StatusIs(absl::StatusCode::kDeadlineExceeded));
  EXPECT_THAT(ids, ElementsAre("my-key", "my-key"));
}

TEST_F(ClientLogicTest, TrainDoesNotRetryAnAnswer) {
  EXPECT_CALL(*connection_, Train(_))
      .WillOnce(Return(absl::InvalidArgumentError("problem: no operator")));
  EXPECT_THAT(client_.Train(v1::TrainRequest()),
              StatusIs(absl::StatusCode::kInvalidArgument, "problem: no operator"));
}

TEST_F(ClientLogicTest, TwoTrainsGetTwoRequestIds) {
  std::vector<std::string> ids;
  EXPECT_CALL(*connection_, Train(_))
      .Times(2)
      .WillRepeatedly(Invoke([&](const v1::TrainRequest& r) -> absl::StatusOr<v1::TrainResponse> {
        ids.push_back(r.request_id());
        return Started("job");
      }));
  ASSERT_THAT(client_.Train(v1::TrainRequest()), IsOk());
  ASSERT_THAT(client_.Train(v1::TrainRequest()), IsOk());
  ASSERT_EQ(ids.size(), 2u);
  EXPECT_NE(ids[0], ids[1]);
}

// The stream's updates, in order, and the last one as the answer.
auto StreamOf(std::vector<int64_t> steps, absl::Status end) {
  return [steps, end](const v1::WatchTrainingJobRequest&,
                      const std::function<void(const v1::WatchTrainingJobResponse&)>& on_update) {
    for (int64_t step : steps) {
      v1::WatchTrainingJobResponse update;
      update.mutable_job()->set_step(step);
      on_update(update);
    }
    return end;
  };
}

TEST_F(ClientLogicTest, WatchReturnsTheLastUpdate) {
  EXPECT_CALL(*connection_, WatchTrainingJob(_, _))
      .WillOnce(Invoke([](const v1::WatchTrainingJobRequest& request, const auto& on_update) {
        EXPECT_EQ(request.job_id(), "j1");
        return StreamOf({0, 50, 100}, absl::OkStatus())(request, on_update);
      }));
  std::vector<int64_t> seen;
  absl::StatusOr<v1::TrainingJob> last = client_.WatchTrainingJob(
      "j1", [&](const v1::TrainingJob& job) { seen.push_back(job.step()); });
  ASSERT_THAT(last, IsOk());
  EXPECT_THAT(seen, ElementsAre(0, 50, 100));
  EXPECT_EQ(last->step(), 100);
}

TEST_F(ClientLogicTest, WatchWithoutAnUpdateOrWithAnErrorFails) {
  EXPECT_CALL(*connection_, WatchTrainingJob(_, _))
      .WillOnce(Invoke(StreamOf({}, absl::OkStatus())))
      .WillOnce(Invoke(StreamOf({3}, absl::UnavailableError("server went away"))));
  EXPECT_THAT(client_.WatchTrainingJob("j1"),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("without an update")));
  EXPECT_THAT(client_.WatchTrainingJob("j1"),
              StatusIs(absl::StatusCode::kUnavailable, "server went away"));
}

// Every message UploadDataset hands the connection, and the server's answer.
auto RecordUpload(std::vector<v1::UploadDatasetRequest>* messages) {
  return [messages](const std::function<bool(v1::UploadDatasetRequest*)>& next)
             -> absl::StatusOr<v1::UploadDatasetResponse> {
    v1::UploadDatasetRequest message;
    while (next(&message)) messages->push_back(message);
    v1::UploadDatasetResponse response;
    response.mutable_dataset()->set_name(messages->front().header().name());
    return response;
  };
}

TEST_F(ClientLogicTest, UploadSendsTheHeaderThenChunksOfTheRows) {
  std::vector<v1::UploadDatasetRequest> messages;
  EXPECT_CALL(*connection_, UploadDataset(_)).WillOnce(Invoke(RecordUpload(&messages)));
  DenseTensor samples = DenseTensor::Matrix(10, 3);
  for (size_t i = 0; i < samples.values.size(); ++i) samples.values[i] = static_cast<float>(i);
  absl::StatusOr<v1::Dataset> dataset = client_.UploadDataset("points", samples, 4);
  ASSERT_THAT(dataset, IsOk());
  EXPECT_EQ(dataset->name(), "points");
  ASSERT_EQ(messages.size(), 4u);
  ASSERT_TRUE(messages[0].has_header());
  EXPECT_EQ(messages[0].header().dim(), 3);
  EXPECT_EQ(messages[0].header().num_samples(), 10);
  std::vector<float> received;
  std::vector<int64_t> rows;
  for (size_t i = 1; i < messages.size(); ++i) {
    ASSERT_TRUE(messages[i].has_chunk());
    EXPECT_EQ(messages[i].chunk().shape(1), 3);
    rows.push_back(messages[i].chunk().shape(0));
    received.insert(received.end(), messages[i].chunk().values().begin(),
                    messages[i].chunk().values().end());
  }
  EXPECT_THAT(rows, ElementsAre(4, 4, 2));
  EXPECT_EQ(received, samples.values);
}

TEST(ClientLogicOptionsTest, UploadChoosesChunksFromTheByteBudget) {
  auto connection = std::make_shared<StrictMock<MockConnection>>();
  ClientOptions options;
  options.upload_chunk_bytes = 2 * 3 * sizeof(float);  // two rows of three floats
  InvnetClient client(std::shared_ptr<InvnetConnection>(connection), options);
  std::vector<v1::UploadDatasetRequest> messages;
  EXPECT_CALL(*connection, UploadDataset(_)).WillOnce(Invoke(RecordUpload(&messages)));
  ASSERT_THAT(client.UploadDataset("d", DenseTensor::Matrix(5, 3)), IsOk());
  std::vector<int64_t> rows;
  for (const auto& m : messages) {
    if (m.has_chunk()) rows.push_back(m.chunk().shape(0));
  }
  EXPECT_THAT(rows, ElementsAre(2, 2, 1));
}

// A StrictMock without expectations: any call would fail the test.
TEST_F(ClientLogicTest, UploadChecksItsArgumentsBeforeSending) {
  EXPECT_THAT(client_.UploadDataset("d", {{2, 2}, {1, 2, 3, NAN}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not finite")));
  EXPECT_THAT(client_.UploadDataset("d", {{3}, {1, 2, 3}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("rank-2")));
  EXPECT_THAT(client_.UploadDataset("d", DenseTensor::Matrix(0, 3)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("at least one sample")));
  EXPECT_THAT(client_.UploadDataset("d", DenseTensor::Matrix(1, 3), -1),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("rows_per_chunk")));
}

grpc::health::v1::HealthCheckResponse Serving(bool serving) {
  grpc::health::v1::HealthCheckResponse response;
  response.set_status(serving ? grpc::health::v1::HealthCheckResponse::SERVING
                              : grpc::health::v1::HealthCheckResponse::NOT_SERVING);
  return response;
}

// Polls with wait_for_ready (a server still starting is waited for, not failed at once) until
// SERVING; names the last answer when it never comes.
TEST_F(ClientLogicTest, WaitUntilServingPollsUntilServing) {
  EXPECT_CALL(*connection_, Check(_, _, /*wait_for_ready=*/true))
      .WillOnce(Return(absl::UnavailableError("connection refused")))
      .WillOnce(Return(Serving(false)))
      .WillOnce(Return(Serving(true)));
  EXPECT_THAT(client_.WaitUntilServing(absl::Seconds(10)), IsOk());
  EXPECT_CALL(*connection_, Check(_, _, true)).WillRepeatedly(Return(Serving(false)));
  EXPECT_THAT(client_.WaitUntilServing(absl::Milliseconds(100)),
              StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr("NOT_SERVING")));
}

TEST_F(ClientLogicTest, HealthAsksWithTheRpcDeadlineAndNoWaiting) {
  EXPECT_CALL(*connection_, Check(_, absl::Seconds(30), /*wait_for_ready=*/false))
      .WillOnce(Return(Serving(true)));
  absl::StatusOr<InvnetClient::HealthStatus> status = client_.Health();
  ASSERT_THAT(status, IsOk());
  EXPECT_EQ(*status, grpc::health::v1::HealthCheckResponse::SERVING);
}

}  // namespace
}  // namespace invnet::client
