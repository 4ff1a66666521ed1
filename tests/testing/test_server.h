#ifndef INVNET_TESTS_TESTING_TEST_SERVER_H_
#define INVNET_TESTS_TESTING_TEST_SERVER_H_

// The real invnet server in the test's own process, for the tests of what only the whole server
// does (auth, limits, watch streams, metrics): Server::Start on 127.0.0.1 port 0, over a scratch
// repository of its own that goes with the object, with stubs of the four services on the
// in-process channel. The binary itself is tests/testing/subprocess.h's ServerProcess.
//
//   std::unique_ptr<TestServer> server = TestServer::Start(options);   // ASSERT_NE(.., nullptr)
//   v1::TrainingJob done = server->TrainAndWait(SmallTrainRequest("toy", v1::LOSS_DIVERGENCE));
//   server->reconstruction().Reconstruct(&context, request, &response);

#include <memory>
#include <string>

#include "invnet/v1/dataset_service.grpc.pb.h"
#include "invnet/v1/model_service.grpc.pb.h"
#include "invnet/v1/reconstruction_service.grpc.pb.h"
#include "invnet/v1/training_service.grpc.pb.h"
#include "server/server.h"
#include "tests/testing/scratch_directory.h"

namespace invnet::testing {

class TestServer {
 public:
  // Starts a server with `options`, listening on 127.0.0.1:0 whatever they say; an empty
  // repository becomes one in the scratch directory, and torch_threads 1 unless set. Null (and
  // a test failure) if it does not start.
  static std::unique_ptr<TestServer> Start(server::ServerOptions options = {});

  server::Server& server() { return *server_; }
  int port() const { return server_->port(); }
  // A new in-process channel (no TCP), and stubs on one made at start.
  std::shared_ptr<grpc::Channel> InProcessChannel() { return server_->InProcessChannel(); }
  v1::TrainingService::Stub& training() { return *training_; }
  v1::ReconstructionService::Stub& reconstruction() { return *reconstruction_; }
  v1::ModelService::Stub& models() { return *models_; }
  v1::DatasetService::Stub& datasets() { return *datasets_; }

  // Submits `request` and watches the job to its end; the job's last state (a test failure and
  // an empty job if Train is refused).
  v1::TrainingJob TrainAndWait(const v1::TrainRequest& request);
  // Watches job `job_id` until the stream ends; its last state.
  v1::TrainingJob WaitForJob(const std::string& job_id);
  // Cancels job `job_id`, whatever its state (for tear-down; errors ignored).
  void CancelJob(const std::string& job_id);

 private:
  TestServer() = default;

  // Destroyed in reverse order: the stubs, then the server (its shutdown waits for in-flight
  // calls), then the scratch directory with the repository.
  ScratchDirectory scratch_{"invnet_test_server"};
  std::unique_ptr<server::Server> server_;
  std::unique_ptr<v1::TrainingService::Stub> training_;
  std::unique_ptr<v1::ReconstructionService::Stub> reconstruction_;
  std::unique_ptr<v1::ModelService::Stub> models_;
  std::unique_ptr<v1::DatasetService::Stub> datasets_;
};

}  // namespace invnet::testing

#endif  // INVNET_TESTS_TESTING_TEST_SERVER_H_
