// End to end: the real invnet-server with --metrics_address=127.0.0.1:0 announces its metrics
// port, answers a scrape over HTTP, and a failing CLI call shows the request id that the
// server's log line carries.

#include <cstdlib>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/http_client.h"
#include "tests/testing/scratch_directory.h"
#include "tests/testing/subprocess.h"

namespace invnet {
namespace {

using ::invnet::testing::CommandResult;
using ::invnet::testing::HttpGet;
using ::invnet::testing::HttpResponse;
using ::invnet::testing::ParseSamples;
using ::invnet::testing::RunCommand;
using ::invnet::testing::ServerProcess;
using ::testing::HasSubstr;

TEST(MetricsE2eTest, ScrapesWorkAndCliErrorsCarryTheLoggedRequestId) {
  const invnet::testing::ScratchDirectory scratch("metrics_e2e");
  const std::string dir = scratch.path();
  auto server = ServerProcess::Start(
      INVNET_SERVER_BINARY,
      {"--repository=" + dir + "/repo", "--torch_threads=1", "--metrics_address=127.0.0.1:0"},
      dir + "/server.log");
  ASSERT_TRUE(server.ok()) << server.status();
  std::smatch match;
  const std::string& announced = (*server)->announcement();
  ASSERT_TRUE(std::regex_search(announced, match,
                                std::regex("invnet-server metrics on 127\\.0\\.0\\.1:([0-9]+)\n")))
      << announced;
  int metrics_port = 0;
  ASSERT_TRUE(absl::SimpleAtoi(match[1].str(), &metrics_port));
  ASSERT_GT(metrics_port, 0);
  EXPECT_NE(metrics_port, (*server)->port());

  absl::StatusOr<HttpResponse> scrape = HttpGet(metrics_port, "/metrics");
  ASSERT_TRUE(scrape.ok()) << scrape.status();
  EXPECT_EQ(scrape->status, 200);
  EXPECT_THAT(scrape->body, HasSubstr("# TYPE invnet_requests_total counter\n"));
  EXPECT_THAT(scrape->body, HasSubstr("\ninvnet_models_loaded 0\n"));

  std::ofstream(dir + "/y.csv") << "0.1,0.2\n";
  CommandResult failed = RunCommand({INVNET_CLI_BINARY, "--server=" + (*server)->target(),
                                     "reconstruct", "--model=nope", "--input=" + dir + "/y.csv"})
                             .value();
  EXPECT_EQ(failed.exit_code, 1);
  EXPECT_THAT(failed.err, HasSubstr("NOT_FOUND"));
  ASSERT_TRUE(std::regex_search(failed.err, match, std::regex("\\(request id ([0-9a-f]{16})\\)")))
      << failed.err;
  const std::string id = match[1].str();

  scrape = HttpGet(metrics_port, "/metrics");
  ASSERT_TRUE(scrape.ok()) << scrape.status();
  EXPECT_EQ(
      ParseSamples(scrape->body)["invnet_requests_total{rpc=\"Reconstruct\",code=\"NOT_FOUND\"}"],
      1);

  EXPECT_EQ((*server)->Terminate(), 0);
  std::stringstream log;
  log << std::ifstream(dir + "/server.log").rdbuf();
  EXPECT_THAT(log.str(), HasSubstr(absl::StrCat("Reconstruct request_id=", id, " code=NOT_FOUND")));
}

}  // namespace
}  // namespace invnet
