// The real `invnet` binary: argv parsing (absl flags) and exit codes, against the fake server
// over TCP. INVNET_CLI_PATH is the binary's path, set by CMake.

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "client/tensor_io.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/client/fake_server.h"
#include "tests/testing/scratch_directory.h"

namespace invnet::client {
namespace {

using ::invnet::client::testing::FakeServer;
using ::invnet::client::testing::MakeModel;
using ::invnet::testing::ScratchDirectory;
using ::testing::HasSubstr;
using ::testing::StartsWith;

struct Result {
  int exit_code = -1;
  std::string out;
  std::string err;
};

class CliBinaryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::MutexLock lock(&fake_.state().mu);
    fake_.state().models.push_back(MakeModel("blur", 1, 2, 2));
  }

  // Runs `invnet <args>` (args are shell words, already quoted where needed).
  Result Invnet(const std::string& args) {
    const std::string out = dir_ + "/stdout", err = dir_ + "/stderr";
    const std::string command =
        absl::StrCat(INVNET_CLI_PATH, " ", args, " >", out, " 2>", err, " </dev/null");
    const int status = std::system(command.c_str());
    Result result;
    result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    result.out = Slurp(out);
    result.err = Slurp(err);
    return result;
  }
  static std::string Slurp(const std::string& path) {
    std::ifstream in(path);
    std::stringstream buffer;
    buffer << in.rdbuf();
    return buffer.str();
  }
  std::string Server() const { return "--server=" + fake_.target(); }

  FakeServer fake_;
  ScratchDirectory scratch_{"cli_binary"};
  const std::string dir_ = scratch_.path();
};

TEST_F(CliBinaryTest, HelpExitsZero) {
  Result r = Invnet("--help");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_THAT(r.out, HasSubstr("Usage: invnet <command>"));
  r = Invnet("models show -h");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_THAT(r.out, StartsWith("Usage: invnet models show NAME [flags]"));
}

TEST_F(CliBinaryTest, FlagParsingErrorsExitTwo) {
  Result r = Invnet("health --no_such_flag=1");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("unknown flag '--no_such_flag'"));
  r = Invnet("reconstruct --model=blur --max_iterations=lots");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("bad value for --max_iterations"));
  r = Invnet("reconstruct --model");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("--model needs a value"));
  r = Invnet("--nomodel");  // --noX only for switches
  EXPECT_EQ(r.exit_code, 2);
  r = Invnet("teleport");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(fake_.calls(), ::testing::IsEmpty());
}

TEST_F(CliBinaryTest, HelpfullAndVersionExitZero) {
  Result r = Invnet("--helpfull");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("All flags:"));
  EXPECT_THAT(r.out, HasSubstr("--chunk_rows=N"));
  r = Invnet("--version");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, std::string("invnet ") + INVNET_EXPECTED_VERSION + "\n");
  // With a number, --version is still the model version.
  std::ofstream(dir_ + "/y.csv") << "2,4\n";
  r = Invnet("reconstruct " + Server() + " --model blur --version 1 --input " + dir_ + "/y.csv");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  absl::MutexLock lock(&fake_.state().mu);
  EXPECT_EQ(fake_.state().reconstruct.version(), 1);
}

TEST_F(CliBinaryTest, TyposGetTheNearestFlagAndTheCommandsHelp) {
  Result r = Invnet("reconstruct --modle=blur --input y.csv");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("unknown flag '--modle'; did you mean --model?"));
  EXPECT_THAT(r.err, HasSubstr("Run 'invnet reconstruct --help' for usage."));
  r = Invnet("health --server=localhost");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("--server 'localhost' needs a port"));
  EXPECT_THAT(fake_.calls(), ::testing::IsEmpty());
}

// Ctrl-C while `train` follows its job: exit 130, saying that the job goes on on the server.
TEST_F(CliBinaryTest, InterruptedTrainSaysTheJobKeepsRunning) {
  {
    absl::MutexLock lock(&fake_.state().mu);
    fake_.state().watch_updates = {testing::MakeJob("job-1", "m1", v1::JOB_STATE_RUNNING, 5, 100)};
    fake_.state().hold_watch_open = true;
  }
  const std::string err_path = dir_ + "/train.err";
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    std::freopen(err_path.c_str(), "w", stderr);
    std::freopen("/dev/null", "w", stdout);
    const std::string server = Server();
    ::execl(INVNET_CLI_PATH, INVNET_CLI_PATH, "train", server.c_str(), "--preset=bimodal2d",
            "--model=m1", "--loss=log-det", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  // Wait (with a deadline) until the CLI follows the job.
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  bool watching = false;
  while (!watching && absl::Now() < deadline) {
    const std::vector<std::string> calls = fake_.calls();
    watching = std::find(calls.begin(), calls.end(), "WatchTrainingJob") != calls.end();
    if (!watching) absl::SleepFor(absl::Milliseconds(10));
  }
  ASSERT_TRUE(watching);
  ASSERT_EQ(::kill(pid, SIGINT), 0);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 130);
  EXPECT_THAT(Slurp(err_path),
              HasSubstr("job job-1 keeps running on the server; `invnet jobs cancel job-1` "
                        "stops it"));
}

TEST_F(CliBinaryTest, HealthAgainstTheServer) {
  Result r = Invnet("health " + Server());
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "SERVING\n");
  r = Invnet("health --server 127.0.0.1:1 --timeout 5");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("UNAVAILABLE"));
  EXPECT_THAT(r.err, HasSubstr("is invnet-server running at 127.0.0.1:1? (--server)"));
}

TEST_F(CliBinaryTest, ReconstructEndToEnd) {
  std::ofstream(dir_ + "/y.csv") << "2,4\n6,8\n";
  Result r =
      Invnet(absl::StrCat("reconstruct ", Server(), " --model blur --version=1 --input ", dir_,
                          "/y.csv --output=", dir_, "/x.npy --noanderson --max_iterations 50"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.err, HasSubstr("converged:"));
  absl::StatusOr<DenseTensor> x = ReadMatrix(dir_ + "/x.npy");
  ASSERT_TRUE(x.ok()) << x.status();
  EXPECT_THAT(x->values, ::testing::ElementsAre(1, 2, 3, 4));
  absl::MutexLock lock(&fake_.state().mu);
  EXPECT_EQ(fake_.state().reconstruct.version(), 1);
  EXPECT_FALSE(fake_.state().reconstruct.solver().anderson());
  EXPECT_TRUE(fake_.state().reconstruct.solver().has_anderson());
  EXPECT_EQ(fake_.state().reconstruct.solver().max_iterations(), 50);
}

TEST_F(CliBinaryTest, FlagsAfterDoubleDashArePositional) {
  Result r = Invnet("models show " + Server() + " -- --weird-name");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("NOT_FOUND: model --weird-name"));
}

}  // namespace
}  // namespace invnet::client
