// Training jobs are sized before they start: a job whose estimated memory exceeds
// --max_job_memory_mb is refused with RESOURCE_EXHAUSTED naming the flag (before anything of it
// is allocated), with the default limit (half the machine's memory) too, and the Jacobian
// estimators' exact-dimension threshold is bounded by name.

#include <memory>
#include <string>

#include <grpcpp/grpcpp.h>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "invnet/v1/training_service.grpc.pb.h"
#include "server/server.h"
#include "tests/testing/test_server.h"
#include "tests/testing/train_requests.h"

namespace invnet::server {
namespace {

using ::invnet::testing::SmallTrainRequest;
using ::testing::HasSubstr;

class JobMemoryTest : public ::testing::Test {
 protected:
  void StartServer(int64_t max_job_memory_bytes) {
    ServerOptions options;
    options.max_job_memory_bytes = max_job_memory_bytes;
    server_ = invnet::testing::TestServer::Start(options);
    ASSERT_NE(server_, nullptr);
  }

  grpc::Status Train(const v1::TrainRequest& request, v1::TrainResponse* response) {
    grpc::ClientContext context;
    return server_->training().Train(&context, request, response);
  }

  std::unique_ptr<invnet::testing::TestServer> server_;
};

TEST_F(JobMemoryTest, AJobOverTheLimitIsRefusedNamingTheFlag) {
  StartServer(int64_t{64} << 20);
  // 8 blocks of 3 layers 1024 wide: 8.4 million weights, over 300 MB with Adam's state.
  v1::TrainRequest wide = SmallTrainRequest("wide", v1::LOSS_APPROXIMATION, 2, 1024);
  wide.mutable_architecture()->set_num_blocks(8);
  v1::TrainResponse response;
  grpc::Status status = Train(wide, &response);
  EXPECT_EQ(status.error_code(), grpc::RESOURCE_EXHAUSTED) << status.error_message();
  EXPECT_THAT(status.error_message(), HasSubstr("--max_job_memory_mb"));
  EXPECT_THAT(status.error_message(), HasSubstr("64 MiB"));
  // The batch size counts too: the same small network fits at batch 64, not at 65536 with exact
  // Jacobians.
  v1::TrainRequest small = SmallTrainRequest("small", v1::LOSS_LOG_DET, 2, 256);
  ASSERT_TRUE(Train(small, &response).ok());
  small.mutable_training()->set_batch_size(65536);
  status = Train(small, &response);
  EXPECT_EQ(status.error_code(), grpc::RESOURCE_EXHAUSTED) << status.error_message();
  EXPECT_THAT(status.error_message(), HasSubstr("activations"));
}

TEST_F(JobMemoryTest, TheDefaultLimitRefusesTheLargestArchitecture) {
  StartServer(0);  // half of the machine's memory
  // 64 blocks of 8 layers 4096 wide: 26 GB of float32 weights, over 100 GB with gradients,
  // Adam and the frozen copies: more than half of any machine these tests run on.
  v1::TrainRequest largest = SmallTrainRequest("largest", v1::LOSS_APPROXIMATION, 2, 4096);
  largest.mutable_architecture()->set_num_blocks(64);
  largest.mutable_architecture()->set_layers_per_block(8);
  v1::TrainResponse response;
  grpc::Status status = Train(largest, &response);
  EXPECT_EQ(status.error_code(), grpc::RESOURCE_EXHAUSTED) << status.error_message();
  EXPECT_THAT(status.error_message(), HasSubstr("--max_job_memory_mb"));
  EXPECT_GT(DefaultMaxJobMemoryBytes(), 0);
}

TEST_F(JobMemoryTest, ExactJacobianThresholdIsBounded) {
  StartServer(0);
  v1::TrainRequest request = SmallTrainRequest("jac", v1::LOSS_LOG_DET, 2);
  request.mutable_training()->set_exact_jacobian_max_dim(1024);
  v1::TrainResponse response;
  grpc::Status status = Train(request, &response);
  EXPECT_EQ(status.error_code(), grpc::INVALID_ARGUMENT) << status.error_message();
  EXPECT_THAT(status.error_message(), HasSubstr("training.exact_jacobian_max_dim"));
  request.mutable_training()->set_exact_jacobian_max_dim(64);
  EXPECT_TRUE(Train(request, &response).ok());
}

TEST(ServerOptionsTest, NegativeJobMemoryIsRefusedByName) {
  ServerOptions options;
  options.address = "127.0.0.1:0";
  options.repository = "/tmp/unused";
  options.max_job_memory_bytes = -1;
  auto server = Server::Start(options);
  EXPECT_EQ(server.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(server.status().message(), HasSubstr("max_job_memory_mb"));
}

}  // namespace
}  // namespace invnet::server
