// The server's start-up validation without starting anything: every limit that makes no sense
// at 0 or below is refused naming its invnet-server flag, addresses must be host:port with a
// port in 0..65535, and a non-loopback address needs tokens or an explicit opt-in.

#include <unistd.h>

#include <functional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/listen_address.h"
#include "server/server.h"

namespace invnet::server {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

ServerOptions ValidOptions() {
  ServerOptions options;
  options.repository = "/tmp/unused";
  return options;
}

TEST(ValidateServerOptionsTest, TheDefaultsAreValid) {
  EXPECT_TRUE(ValidateServerOptions(ValidOptions()).ok());
  EXPECT_EQ(ServerOptions().address, "127.0.0.1:50051");
}

TEST(ValidateServerOptionsTest, NonsensicalLimitsAreRefusedNamingTheFlag) {
  const std::vector<std::pair<std::string, std::function<void(ServerOptions&)>>> cases = {
      {"--repository", [](ServerOptions& o) { o.repository = ""; }},
      {"--max_jobs", [](ServerOptions& o) { o.max_concurrent_jobs = 0; }},
      {"--max_jobs", [](ServerOptions& o) { o.max_concurrent_jobs = -1; }},
      {"--max_queued_jobs", [](ServerOptions& o) { o.max_queued_jobs = -1; }},
      {"--max_watch_streams", [](ServerOptions& o) { o.max_watch_streams = 0; }},
      {"--max_watch_streams_per_connection",
       [](ServerOptions& o) { o.max_watch_streams_per_connection = 0; }},
      {"--max_models", [](ServerOptions& o) { o.max_model_versions = 0; }},
      {"--max_batch", [](ServerOptions& o) { o.max_batch = 0; }},
      {"--max_dataset_mb", [](ServerOptions& o) { o.max_dataset_bytes = 0; }},
      {"--max_message_mb", [](ServerOptions& o) { o.max_message_bytes = 0; }},
      {"--max_message_mb", [](ServerOptions& o) { o.max_message_bytes = int64_t{4} << 30; }},
      {"--torch_threads", [](ServerOptions& o) { o.torch_threads = -1; }},
      {"--shutdown_grace_seconds", [](ServerOptions& o) { o.shutdown_grace = absl::Seconds(-1); }},
      {"--batch_max_rows", [](ServerOptions& o) { o.batching.max_batch_rows = 0; }},
      {"--batch_max_delay_us",
       [](ServerOptions& o) { o.batching.max_delay = absl::Microseconds(-1); }},
      {"--batch_concurrent_solves",
       [](ServerOptions& o) { o.batching.max_concurrent_solves = -1; }},
      {"--max_queued_requests", [](ServerOptions& o) { o.batching.max_queued_requests = 0; }},
  };
  for (const auto& [flag, spoil] : cases) {
    ServerOptions options = ValidOptions();
    spoil(options);
    const absl::Status status = ValidateServerOptions(options);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << flag;
    EXPECT_THAT(std::string(status.message()), StartsWith(flag + ": ")) << status;
    EXPECT_THAT(std::string(status.message()),
                AllOf(Not(HasSubstr("max_concurrent_jobs")), Not(HasSubstr("_bytes")),
                      Not(HasSubstr("max_model_versions"))))
        << status;
  }
}

TEST(ValidateServerOptionsTest, AddressesMustBeHostAndPort) {
  for (const char* address :
       {"127.0.0.1:99999", "127.0.0.1:65536", "localhost", "127.0.0.1:", "127.0.0.1:-1",
        "127.0.0.1:+80", "127.0.0.1: 80", "127.0.0.1:http", "::1:0", "", "unix:/tmp/socket"}) {
    ServerOptions options = ValidOptions();
    options.address = address;
    const absl::Status status = ValidateServerOptions(options);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << address;
    EXPECT_THAT(std::string(status.message()), StartsWith("--address: ")) << status;
  }
  for (const char* address : {"127.0.0.1:0", "127.0.0.1:65535", "localhost:50051", "[::1]:0"}) {
    ServerOptions options = ValidOptions();
    options.address = address;
    EXPECT_TRUE(ValidateServerOptions(options).ok()) << address;
  }
}

TEST(ValidateServerOptionsTest, NonLoopbackNeedsTokensOrTheOptIn) {
  for (const char* address :
       {"0.0.0.0:50051", ":50051", "[::]:50051", "192.0.2.1:50051", "invnet.example:50051"}) {
    ServerOptions options = ValidOptions();
    options.address = address;
    EXPECT_TRUE(ListensBeyondLoopback(options)) << address;
    const absl::Status refused = ValidateServerOptions(options);
    EXPECT_EQ(refused.code(), absl::StatusCode::kInvalidArgument) << address;
    EXPECT_THAT(std::string(refused.message()),
                AllOf(StartsWith("--address: "), HasSubstr("--allow_unauthenticated")));
    options.allow_unauthenticated = true;
    EXPECT_TRUE(ValidateServerOptions(options).ok()) << address;
    options.allow_unauthenticated = false;
    options.auth_tokens_file = "/etc/invnet/tokens";  // read later, by Start
    EXPECT_TRUE(ValidateServerOptions(options).ok()) << address;
  }
  for (const char* address :
       {"127.0.0.1:50051", "127.1.2.3:1", "localhost:1", "LOCALHOST:1", "[::1]:1"}) {
    ServerOptions options = ValidOptions();
    options.address = address;
    EXPECT_FALSE(ListensBeyondLoopback(options)) << address;
  }
}

TEST(ListenTcpTest, ATakenPortIsAddressAlreadyInUse) {
  absl::StatusOr<int> first = ListenTcp("--address", {"127.0.0.1", 0}, 1);
  ASSERT_TRUE(first.ok()) << first.status();
  const int port = BoundPort(*first);
  ASSERT_GT(port, 0);
  absl::StatusOr<int> second = ListenTcp("--address", {"127.0.0.1", port}, 1);
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(second.status().message()),
              AllOf(StartsWith("--address: "), HasSubstr(absl::StrCat("127.0.0.1:", port)),
                    HasSubstr("address already in use")));
  close(*first);
}

}  // namespace
}  // namespace invnet::server
