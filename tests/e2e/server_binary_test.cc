// The invnet-server binary itself: its listener (no port sharing, address validation, loopback
// by default), its flags (--help, --version, limits named by flag) and the Docker HEALTHCHECK
// script (docker/healthcheck.sh) run against a real server.

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/certificates.h"
#include "tests/testing/scratch_directory.h"
#include "tests/testing/subprocess.h"

namespace invnet {
namespace {

using ::invnet::testing::CommandResult;
using ::invnet::testing::RunCommand;
using ::invnet::testing::ServerProcess;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

// A port that was free a moment ago (bound to port 0, then closed).
int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    return 0;
  }
  socklen_t length = sizeof(address);
  getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  close(fd);
  return ntohs(address.sin_port);
}

class ServerBinaryTest : public ::testing::Test {
 protected:
  std::string Path(const std::string& name) const { return dir_ + "/" + name; }

  // Runs invnet-server to completion (for flags that make it exit at once).
  CommandResult RunServer(std::vector<std::string> args) {
    std::vector<std::string> argv = {INVNET_SERVER_BINARY};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunCommand(argv, absl::Seconds(30)).value();
  }

  std::unique_ptr<ServerProcess> StartServer(const std::string& name,
                                             std::vector<std::string> args) {
    args.insert(args.begin(), {"--repository=" + Path(name), "--torch_threads=1"});
    auto server = ServerProcess::Start(INVNET_SERVER_BINARY, args, Path(name + ".log"));
    EXPECT_TRUE(server.ok()) << server.status();
    return server.ok() ? *std::move(server) : nullptr;
  }

  CommandResult Health(const std::string& target) {
    return RunCommand({INVNET_CLI_BINARY, "health", "--server=" + target, "--timeout=10"}).value();
  }

  std::string ReadLog(const std::string& name) {
    std::ifstream in(Path(name + ".log"));
    return std::string(std::istreambuf_iterator<char>(in), {});
  }

  invnet::testing::ScratchDirectory scratch_{"server_binary_test"};
  const std::string dir_ = scratch_.path();
};

// gRPC sets SO_REUSEPORT unless told not to: then the second server also "listened" on the
// port and the kernel split the calls between the two.
TEST_F(ServerBinaryTest, ASecondServerOnATakenPortFailsAtStart) {
  std::unique_ptr<ServerProcess> first = StartServer("first", {});
  ASSERT_NE(first, nullptr);
  const CommandResult second = RunServer({"--repository=" + Path("second"), "--torch_threads=1",
                                          absl::StrCat("--address=127.0.0.1:", first->port())});
  EXPECT_EQ(second.exit_code, 1) << second.out << second.err;
  EXPECT_THAT(second.err, AllOf(HasSubstr("--address"), HasSubstr("address already in use")));
  EXPECT_THAT(second.out, Not(HasSubstr("listening on")));
  EXPECT_EQ(Health(first->target()).exit_code, 0);
  EXPECT_EQ(first->Terminate(), 0);
}

TEST_F(ServerBinaryTest, AddressesThatAreNotHostAndPortAreUsageErrors) {
  // (Every other malformed address: tests/server/server_options_test.cc.)
  for (const char* address : {"127.0.0.1:99999", "localhost", "::1:0"}) {
    const CommandResult result =
        RunServer({"--repository=" + Path("repo"), absl::StrCat("--address=", address)});
    EXPECT_EQ(result.exit_code, 2) << address << ": " << result.err;
    EXPECT_THAT(result.err, HasSubstr("--address: ")) << address;
    EXPECT_THAT(result.out, Not(HasSubstr("listening on"))) << address;
  }
}

TEST_F(ServerBinaryTest, ANonLoopbackAddressNeedsTokensOrAnExplicitOptIn) {
  const CommandResult refused = RunServer({"--repository=" + Path("repo"), "--address=0.0.0.0:0"});
  EXPECT_EQ(refused.exit_code, 2) << refused.err;
  EXPECT_THAT(refused.err, AllOf(HasSubstr("--address: 0.0.0.0:0"), HasSubstr("--auth_tokens_file"),
                                 HasSubstr("--allow_unauthenticated")));
  EXPECT_THAT(refused.out, Not(HasSubstr("listening on")));

  // The opt-in starts it, with a warning; it serves on every interface, loopback included.
  std::unique_ptr<ServerProcess> open =
      StartServer("open", {"--address=0.0.0.0:0", "--allow_unauthenticated"});
  ASSERT_NE(open, nullptr);
  EXPECT_THAT(open->announcement(), HasSubstr("listening on 0.0.0.0:"));
  EXPECT_EQ(Health(open->target()).exit_code, 0);
  EXPECT_THAT(ReadLog("open"), HasSubstr("without authentication (--allow_unauthenticated)"));
  EXPECT_EQ(open->Terminate(), 0);

  // Tokens need no opt-in.
  std::ofstream(Path("tokens")) << "admin 0123456789abcdef0123456789abcdef\n";
  std::unique_ptr<ServerProcess> secured =
      StartServer("secured", {"--address=0.0.0.0:0", "--auth_tokens_file=" + Path("tokens")});
  ASSERT_NE(secured, nullptr);
  EXPECT_EQ(Health(secured->target()).exit_code, 0);
  EXPECT_THAT(ReadLog("secured"), Not(HasSubstr("--allow_unauthenticated")));
  EXPECT_EQ(secured->Terminate(), 0);
}

TEST_F(ServerBinaryTest, HelpHelpfullAndVersionExitZero) {
  const CommandResult help = RunServer({"--help"});
  EXPECT_EQ(help.exit_code, 0) << help.err;
  EXPECT_THAT(help.out,
              AllOf(HasSubstr("--address (default: \"127.0.0.1:50051\")"), HasSubstr("--max_jobs"),
                    HasSubstr("--max_watch_streams"), HasSubstr("--allow_unauthenticated"),
                    HasSubstr("--metrics_address"), Not(HasSubstr("--flagfile"))));
  const CommandResult full = RunServer({"--helpfull"});
  EXPECT_EQ(full.exit_code, 0) << full.err;
  EXPECT_THAT(full.out, AllOf(HasSubstr("--max_jobs"), HasSubstr("--flagfile")));
  const CommandResult match = RunServer({"--help=tls"});
  EXPECT_EQ(match.exit_code, 0) << match.err;
  EXPECT_THAT(match.out, AllOf(HasSubstr("--tls_cert_file"), Not(HasSubstr("--max_jobs"))));
  const CommandResult version = RunServer({"--version"});
  EXPECT_EQ(version.exit_code, 0) << version.err;
  EXPECT_EQ(version.out, absl::StrCat("invnet-server ", INVNET_VERSION, "\n"));
}

// Each of these would start a server that refuses everything (or wraps around): a usage error
// at start, naming the flag and never an internal option name. (Every limit is covered on
// ValidateServerOptions in tests/server/server_options_test.cc; these three cross main.cc's
// conversions: a plain int, MiB to bytes, microseconds.)
TEST_F(ServerBinaryTest, LimitsThatMakeNoSenseAtZeroAreUsageErrorsNamingTheFlag) {
  for (const char* flag :
       {"--max_jobs=0", "--max_message_mb=99999999999999", "--batch_max_delay_us=-1"}) {
    const std::string name(flag, std::string(flag).find('='));
    const CommandResult result =
        RunServer({"--repository=" + Path("repo"), "--address=127.0.0.1:0", flag});
    EXPECT_EQ(result.exit_code, 2) << flag << ": " << result.err;
    EXPECT_THAT(result.err, HasSubstr(name + ": ")) << flag;
    EXPECT_THAT(result.err, AllOf(Not(HasSubstr("max_concurrent_jobs")),
                                  Not(HasSubstr("max_model_versions")), Not(HasSubstr("_bytes"))))
        << flag;
  }
}

// absl's parser exits 1 on these; invnet-server answers them as the usage errors they are.
TEST_F(ServerBinaryTest, UnknownFlagsAndUnparsableValuesAreUsageErrors) {
  const struct {
    std::vector<std::string> args;
    const char* expected;
  } cases[] = {
      {{"--bogus=1"}, "unknown flag '--bogus'"},
      {{"--max_jobs=two"}, "--max_jobs: "},
      {{"--allow_unauthenticated=maybe"}, "--allow_unauthenticated: "},
      {{"--nomax_jobs"}, "unknown flag '--nomax_jobs'"},
      {{"--max_jobs"}, "--max_jobs: needs a value"},
  };
  for (const auto& c : cases) {
    std::vector<std::string> args = {"--repository=" + Path("repo"), "--address=127.0.0.1:0"};
    args.insert(args.end(), c.args.begin(), c.args.end());
    const CommandResult result = RunServer(args);
    EXPECT_EQ(result.exit_code, 2) << c.args[0] << ": " << result.err;
    EXPECT_THAT(result.err, HasSubstr(c.expected)) << c.args[0];
    EXPECT_THAT(result.err, HasSubstr("--help")) << c.args[0];
  }
}

// The image's HEALTHCHECK reads the server's own command line: the last --address (in either
// flag form) and its TLS files.
TEST_F(ServerBinaryTest, HealthcheckScriptFollowsTheAddressAndTls) {
  const auto healthcheck = [&](const ServerProcess& server, std::vector<std::string> env) {
    std::vector<std::string> argv = {"/usr/bin/env", "INVNET_CLI=" INVNET_CLI_BINARY,
                                     absl::StrCat("INVNET_HEALTHCHECK_PID=", server.pid())};
    argv.insert(argv.end(), env.begin(), env.end());
    argv.push_back(INVNET_HEALTHCHECK_SCRIPT);
    return RunCommand(argv, absl::Seconds(30)).value();
  };

  const int port = FreePort();
  ASSERT_GT(port, 0);
  // After the harness's --address=127.0.0.1:0, as two arguments.
  std::unique_ptr<ServerProcess> plain =
      StartServer("plain", {"--address", absl::StrCat("127.0.0.1:", port)});
  ASSERT_NE(plain, nullptr);
  ASSERT_EQ(plain->port(), port);
  const CommandResult serving = healthcheck(*plain, {});
  EXPECT_EQ(serving.exit_code, 0) << serving.out << serving.err;
  EXPECT_THAT(serving.out, HasSubstr("SERVING"));
  EXPECT_EQ(plain->Terminate(), 0);

  // Mutual TLS on every interface: the check dials localhost with TLS and a client certificate.
  auto certs = testing::MakeTestCertificates(dir_);
  ASSERT_TRUE(certs.ok()) << certs.status();
  const int tls_port = FreePort();
  ASSERT_GT(tls_port, 0);
  std::unique_ptr<ServerProcess> tls = StartServer(
      "tls", {absl::StrCat("--address=0.0.0.0:", tls_port), "--allow_unauthenticated",
              "--tls_cert_file=" + certs->server_cert, "--tls_key_file=" + certs->server_key,
              "--tls_client_ca_file=" + certs->ca_cert});
  ASSERT_NE(tls, nullptr);
  const std::vector<std::string> client = {"INVNET_HEALTHCHECK_CA_FILE=" + certs->ca_cert,
                                           "INVNET_HEALTHCHECK_CERT_FILE=" + certs->client_cert,
                                           "INVNET_HEALTHCHECK_KEY_FILE=" + certs->client_key};
  const CommandResult tls_serving = healthcheck(*tls, client);
  EXPECT_EQ(tls_serving.exit_code, 0) << tls_serving.out << tls_serving.err;
  // Without the client certificate the server refuses the handshake: the check really uses TLS.
  EXPECT_NE(healthcheck(*tls, {client[0]}).exit_code, 0);
  EXPECT_EQ(tls->Terminate(), 0);
}

}  // namespace
}  // namespace invnet
