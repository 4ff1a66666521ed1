// The real invnet-server under an address-space limit (RLIMIT_AS, as `prlimit --as` sets it):
// a training job larger than the memory it may use is refused at once with RESOURCE_EXHAUSTED
// naming --max_job_memory_mb, and the server lives on and trains what fits.

#include <sys/resource.h>
#include <sys/wait.h>

#include <cstdlib>
#include <string>

#include "absl/strings/match.h"
#include "client/client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/scratch_directory.h"
#include "tests/testing/subprocess.h"
#include "tests/testing/train_requests.h"

namespace invnet {
namespace {

using ::invnet::client::InvnetClient;
using ::invnet::testing::ServerProcess;
using ::testing::HasSubstr;

// The limit the server inherits: enough for it to start (about 1.8 GB of address space) and
// train a small model, far too little for the job below. The default --max_job_memory_mb is
// half of it.
constexpr rlim_t kAddressSpace = rlim_t{3} << 30;

TEST(MemoryLimitE2eTest, AJobTooLargeForTheAddressSpaceIsRefusedAndTheServerLivesOn) {
#if defined(__SANITIZE_ADDRESS__)
  // AddressSanitizer reserves terabytes of shadow address space: no RLIMIT_AS fits it.
  GTEST_SKIP() << "an address-space limit cannot hold an AddressSanitizer process";
#endif
  const invnet::testing::ScratchDirectory scratch("memory_e2e");
  const std::string dir = scratch.path();
  // Set in this process (a small gRPC client), inherited by the server it starts.
  rlimit limit{kAddressSpace, kAddressSpace};
  ASSERT_EQ(setrlimit(RLIMIT_AS, &limit), 0);
  auto server = ServerProcess::Start(
      INVNET_SERVER_BINARY, {"--repository=" + dir + "/repo", "--torch_threads=1"},
      dir + "/server.log");
  ASSERT_TRUE(server.ok()) << server.status();
  client::ClientOptions options;
  options.rpc_timeout = absl::Seconds(20);
  auto client = InvnetClient::Connect((*server)->target(), options).value();
  ASSERT_TRUE(client->WaitUntilServing(absl::Seconds(30)).ok());

  // 64 blocks of 3 layers 4096 wide: 4 GB of float32 weights before gradients and Adam.
  v1::TrainRequest huge = testing::SmallTrainRequest("huge", v1::LOSS_APPROXIMATION, 2, 4096);
  huge.mutable_architecture()->set_num_blocks(64);
  auto refused = client->Train(huge);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted) << refused.status();
  EXPECT_THAT(refused.status().message(), HasSubstr("--max_job_memory_mb"));

  // Alive and serving: a small job trains and publishes.
  EXPECT_GT((*server)->pid(), 0);
  auto started = client->Train(testing::SmallTrainRequest("small", v1::LOSS_DIVERGENCE, 20));
  ASSERT_TRUE(started.ok()) << started.status();
  auto job = client->WatchTrainingJob(started->job().job_id());
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->state(), v1::JOB_STATE_SUCCEEDED) << job->error();
  EXPECT_EQ((*server)->Terminate(), 0);
}

}  // namespace
}  // namespace invnet
