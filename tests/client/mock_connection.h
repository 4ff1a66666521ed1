#ifndef INVNET_TESTS_CLIENT_MOCK_CONNECTION_H_
#define INVNET_TESTS_CLIENT_MOCK_CONNECTION_H_

// A gmock InvnetConnection (client/connection.h): tests of InvnetClient and of what is built on
// it script each call's answer with EXPECT_CALL / ON_CALL instead of running a server. A method
// without an expectation answers gmock's default (an OK default message) and warns as an
// uninteresting call; use ::testing::StrictMock to make any unexpected call fail.

#include <functional>

#include "client/connection.h"
#include "gmock/gmock.h"

namespace invnet::client::testing {

class MockConnection : public InvnetConnection {
 public:
  MOCK_METHOD(absl::StatusOr<v1::ReconstructResponse>, Reconstruct, (const v1::ReconstructRequest&),
              (override));
  MOCK_METHOD(absl::StatusOr<v1::ForwardResponse>, Forward, (const v1::ForwardRequest&),
              (override));
  MOCK_METHOD(absl::StatusOr<v1::EstimateResponse>, Estimate, (const v1::EstimateRequest&),
              (override));
  MOCK_METHOD(absl::StatusOr<v1::DrawTestPairsResponse>, DrawTestPairs,
              (const v1::DrawTestPairsRequest&), (override));
  MOCK_METHOD(absl::StatusOr<v1::EvaluateResponse>, Evaluate, (const v1::EvaluateRequest&),
              (override));
  MOCK_METHOD(absl::StatusOr<v1::TrainResponse>, Train, (const v1::TrainRequest&), (override));
  MOCK_METHOD(absl::StatusOr<v1::GetTrainingJobResponse>, GetTrainingJob,
              (const v1::GetTrainingJobRequest&), (override));
  MOCK_METHOD(absl::StatusOr<v1::ListTrainingJobsResponse>, ListTrainingJobs,
              (const v1::ListTrainingJobsRequest&), (override));
  MOCK_METHOD(absl::StatusOr<v1::CancelTrainingJobResponse>, CancelTrainingJob,
              (const v1::CancelTrainingJobRequest&), (override));
  MOCK_METHOD(absl::Status, WatchTrainingJob,
              (const v1::WatchTrainingJobRequest&,
               const std::function<void(const v1::WatchTrainingJobResponse&)>&),
              (override));
  MOCK_METHOD(absl::StatusOr<v1::ListModelsResponse>, ListModels, (const v1::ListModelsRequest&),
              (override));
  MOCK_METHOD(absl::StatusOr<v1::GetModelResponse>, GetModel, (const v1::GetModelRequest&),
              (override));
  MOCK_METHOD(absl::StatusOr<v1::DeleteModelResponse>, DeleteModel, (const v1::DeleteModelRequest&),
              (override));
  MOCK_METHOD(absl::StatusOr<v1::UploadDatasetResponse>, UploadDataset,
              (const std::function<bool(v1::UploadDatasetRequest*)>&), (override));
  MOCK_METHOD(absl::StatusOr<v1::ListDatasetsResponse>, ListDatasets,
              (const v1::ListDatasetsRequest&), (override));
  MOCK_METHOD(absl::StatusOr<v1::DeleteDatasetResponse>, DeleteDataset,
              (const v1::DeleteDatasetRequest&), (override));
  MOCK_METHOD(absl::StatusOr<grpc::health::v1::HealthCheckResponse>, Check,
              (const grpc::health::v1::HealthCheckRequest&, absl::Duration, bool), (override));
};

}  // namespace invnet::client::testing

#endif  // INVNET_TESTS_CLIENT_MOCK_CONNECTION_H_
