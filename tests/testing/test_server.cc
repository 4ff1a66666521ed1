#include "tests/testing/test_server.h"

#include <utility>

#include "grpcpp/client_context.h"
#include "gtest/gtest.h"

namespace invnet::testing {

std::unique_ptr<TestServer> TestServer::Start(server::ServerOptions options) {
  std::unique_ptr<TestServer> test(new TestServer());
  options.address = "127.0.0.1:0";  // parallel tests never share a port
  if (options.repository.empty()) options.repository = test->scratch_.Path("repository");
  if (options.torch_threads == 0) options.torch_threads = 1;
  absl::StatusOr<std::unique_ptr<server::Server>> started = server::Server::Start(options);
  if (!started.ok()) {
    ADD_FAILURE() << "the test server did not start: " << started.status();
    return nullptr;
  }
  test->server_ = *std::move(started);
  std::shared_ptr<grpc::Channel> channel = test->server_->InProcessChannel();
  test->training_ = v1::TrainingService::NewStub(channel);
  test->reconstruction_ = v1::ReconstructionService::NewStub(channel);
  test->models_ = v1::ModelService::NewStub(channel);
  test->datasets_ = v1::DatasetService::NewStub(channel);
  return test;
}

v1::TrainingJob TestServer::TrainAndWait(const v1::TrainRequest& request) {
  grpc::ClientContext context;
  v1::TrainResponse response;
  const grpc::Status status = training_->Train(&context, request, &response);
  if (!status.ok()) {
    ADD_FAILURE() << "Train " << request.model_name() << ": " << status.error_message();
    return v1::TrainingJob();
  }
  return WaitForJob(response.job().job_id());
}

v1::TrainingJob TestServer::WaitForJob(const std::string& job_id) {
  grpc::ClientContext context;
  v1::WatchTrainingJobRequest request;
  request.set_job_id(job_id);
  std::unique_ptr<grpc::ClientReader<v1::WatchTrainingJobResponse>> reader =
      training_->WatchTrainingJob(&context, request);
  v1::WatchTrainingJobResponse update;
  v1::TrainingJob last;
  while (reader->Read(&update)) last = update.job();
  const grpc::Status status = reader->Finish();
  EXPECT_TRUE(status.ok()) << "Watch " << job_id << ": " << status.error_message();
  return last;
}

void TestServer::CancelJob(const std::string& job_id) {
  grpc::ClientContext context;
  v1::CancelTrainingJobRequest request;
  request.set_job_id(job_id);
  v1::CancelTrainingJobResponse response;
  (void)training_->CancelTrainingJob(&context, request, &response);
}

}  // namespace invnet::testing
