#include "client/cli.h"

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "client/report.h"
#include "client/tensor_io.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proto/base/file_io.h"
#include "proto/base/status_macros.h"
#include "tests/client/canned_messages.h"
#include "tests/client/fake_server.h"
#include "tests/client/mock_connection.h"
#include "tests/testing/scratch_directory.h"
#include "tests/testing/status_matchers.h"

namespace invnet::client::cli {
namespace {

using ::invnet::client::testing::FakeServer;
using ::invnet::client::testing::MakeJob;
using ::invnet::client::testing::MakeModel;
using ::invnet::client::testing::MockConnection;
using ::invnet::testing::IsOk;
using ::invnet::testing::ScratchDirectory;
using ::invnet::testing::StatusIs;
using ::testing::_;
using ::testing::DoAll;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::Return;
using ::testing::SaveArg;
using ::testing::StartsWith;
using ::testing::StrictMock;

// "--name=value" / "--switch" words -> CliFlags, standing in for cli_main.cc's absl parsing.
void SetFlag(CliFlags& f, const std::string& name, const std::string& v) {
  static const auto* setters =
      new std::map<std::string, std::function<void(CliFlags&, const std::string&)>>{
          {"server", [](CliFlags& f, const std::string& v) { f.server = v; }},
          {"timeout", [](CliFlags& f, const std::string& v) { f.timeout = std::stod(v); }},
          {"tls", [](CliFlags& f, const std::string& v) { f.tls = v == "true"; }},
          {"tls_ca_file", [](CliFlags& f, const std::string& v) { f.tls_ca_file = v; }},
          {"tls_cert_file", [](CliFlags& f, const std::string& v) { f.tls_cert_file = v; }},
          {"tls_key_file", [](CliFlags& f, const std::string& v) { f.tls_key_file = v; }},
          {"token_file", [](CliFlags& f, const std::string& v) { f.token_file = v; }},
          {"service", [](CliFlags& f, const std::string& v) { f.service = v; }},
          {"preset", [](CliFlags& f, const std::string& v) { f.preset = v; }},
          {"spec", [](CliFlags& f, const std::string& v) { f.spec = v; }},
          {"model", [](CliFlags& f, const std::string& v) { f.model = v; }},
          {"loss", [](CliFlags& f, const std::string& v) { f.loss = v; }},
          {"target_space", [](CliFlags& f, const std::string& v) { f.target_space = v; }},
          {"dataset", [](CliFlags& f, const std::string& v) { f.dataset = v; }},
          {"steps", [](CliFlags& f, const std::string& v) { f.steps = std::stoll(v); }},
          {"batch_size", [](CliFlags& f, const std::string& v) { f.batch_size = std::stoll(v); }},
          {"learning_rate",
           [](CliFlags& f, const std::string& v) { f.learning_rate = std::stod(v); }},
          {"seed", [](CliFlags& f, const std::string& v) { f.seed = std::stoull(v); }},
          {"detach", [](CliFlags& f, const std::string& v) { f.detach = v == "true"; }},
          {"all_versions", [](CliFlags& f, const std::string& v) { f.all_versions = v == "true"; }},
          {"version", [](CliFlags& f, const std::string& v) { f.version = std::stoll(v); }},
          {"input", [](CliFlags& f, const std::string& v) { f.input = v; }},
          {"output", [](CliFlags& f, const std::string& v) { f.output = v; }},
          {"tolerance", [](CliFlags& f, const std::string& v) { f.tolerance = std::stod(v); }},
          {"max_iterations",
           [](CliFlags& f, const std::string& v) { f.max_iterations = std::stoll(v); }},
          {"anderson", [](CliFlags& f, const std::string& v) { f.anderson = v == "true"; }},
          {"anderson_memory",
           [](CliFlags& f, const std::string& v) { f.anderson_memory = std::stoll(v); }},
          {"estimators", [](CliFlags& f, const std::string& v) { f.estimators = v; }},
          {"rows_per_chunk",
           [](CliFlags& f, const std::string& v) { f.rows_per_chunk = std::stoll(v); }},
          {"chunk_rows", [](CliFlags& f, const std::string& v) { f.chunk_rows = std::stoll(v); }},
          {"diagnostics", [](CliFlags& f, const std::string& v) { f.diagnostics = v; }},
          {"posterior_std", [](CliFlags& f, const std::string& v) { f.posterior_std = v; }},
          {"count", [](CliFlags& f, const std::string& v) { f.count = std::stoll(v); }},
          {"rpc", [](CliFlags& f, const std::string& v) { f.rpc = v; }},
          {"batch", [](CliFlags& f, const std::string& v) { f.batch = std::stoll(v); }},
          {"concurrency", [](CliFlags& f, const std::string& v) { f.concurrency = std::stoll(v); }},
          {"duration", [](CliFlags& f, const std::string& v) { f.duration = std::stod(v); }},
          {"requests", [](CliFlags& f, const std::string& v) { f.requests = std::stoll(v); }},
          {"rate", [](CliFlags& f, const std::string& v) { f.rate = std::stod(v); }},
          {"warmup", [](CliFlags& f, const std::string& v) { f.warmup = std::stod(v); }},
          {"name", [](CliFlags& f, const std::string& v) { f.name = v; }},
          {"losses", [](CliFlags& f, const std::string& v) { f.losses = v; }},
          {"test_pairs", [](CliFlags& f, const std::string& v) { f.test_pairs = std::stoll(v); }},
          {"output_dir", [](CliFlags& f, const std::string& v) { f.output_dir = v; }},
      };
  auto it = setters->find(name);
  ASSERT_NE(it, setters->end()) << "no test setter for --" << name;
  it->second(f, v);
}

Invocation Parse(const std::vector<std::string>& words) {
  Invocation inv;
  for (const std::string& word : words) {
    if (word == "--help") {
      inv.help = true;
    } else if (absl::StartsWith(word, "--")) {
      const size_t eq = word.find('=');
      const std::string name = word.substr(2, eq == std::string::npos ? std::string::npos : eq - 2);
      SetFlag(inv.flags, name, eq == std::string::npos ? "true" : word.substr(eq + 1));
      inv.specified.insert(name);
    } else {
      inv.args.push_back(word);
    }
  }
  return inv;
}

// The CLI over a gmock connection: each test scripts the server's answers, so what is checked is
// the command's own work (flags to request, answer to output). The mock is strict: a call no test
// scripted fails the test, so "the server was not called" needs no check of its own. Deadlines
// and the wire (what each call arrives with) are client_test's; `invnet bench` drives the gRPC
// channel itself, so its test runs over the fake server (CliOverWireTest below).
class CliTest : public ::testing::Test {
 protected:
  // Runs `invnet <words>`; returns the exit code.
  int Run(const std::vector<std::string>& words, bool interactive = false) {
    return RunInvocation(Parse(words), interactive);
  }
  int RunInvocation(const Invocation& invocation, bool interactive = false) {
    out_.str("");
    err_.str("");
    Context ctx;
    ctx.out = &out_;
    ctx.err = &err_;
    ctx.interactive = interactive;
    ctx.connect =
        [this](const std::string& target,
               const ClientOptions& options) -> absl::StatusOr<std::unique_ptr<InvnetClient>> {
      ++connects_;
      target_ = target;
      options_ = options;
      return std::make_unique<InvnetClient>(std::shared_ptr<InvnetConnection>(connection_),
                                            options);
    };
    ctx.set_interrupt_message = [this](const std::string& message) {
      interrupt_messages_.push_back(message);
    };
    return Main(invocation, ctx);
  }

  std::string Path(const std::string& name) const { return dir_ + "/" + name; }
  void WriteText(const std::string& name, const std::string& text) const {
    std::ofstream(Path(name)) << text;
  }
  std::string ReadText(const std::string& name) const {
    std::ifstream in(Path(name));
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }

  std::shared_ptr<StrictMock<MockConnection>> connection_ =
      std::make_shared<StrictMock<MockConnection>>();
  ScratchDirectory scratch_{"cli_test"};
  const std::string dir_ = scratch_.path();
  std::ostringstream out_;
  std::ostringstream err_;
  int connects_ = 0;
  std::vector<std::string> interrupt_messages_;
  std::string target_;
  ClientOptions options_;
};

// `in` times `factor`, in its shape.
v1::Tensor Scaled(const v1::Tensor& in, float factor) {
  v1::Tensor out = in;
  for (float& v : *out.mutable_values()) v *= factor;
  return out;
}

int64_t Rows(const v1::Tensor& t) { return t.shape_size() > 0 ? t.shape(0) : 0; }

// The real server's refusal of a batch over its --max_batch, which the CLI splits on.
absl::Status OverMaxBatch(const v1::Tensor& batch, int64_t max_batch) {
  if (Rows(batch) <= max_batch) return absl::OkStatus();
  return absl::ResourceExhaustedError(absl::StrCat("measurements: a batch of ", Rows(batch),
                                                   " rows exceeds the server's limit of ",
                                                   max_batch, " (--max_batch)"));
}

// Reconstruct's scripted answer: x = y / 2; sample i took i + 1 iterations with error bound
// 1e-6 (i + 1) and forward residual 1e-5, and all but sample i = 1 converged. With posterior_std,
// std 0.1 (i + 1) in every component of row i, except row i = 2 (NaN: undefined).
v1::ReconstructResponse HalfOfY(const v1::ReconstructRequest& request) {
  v1::ReconstructResponse response;
  response.set_model(request.model());
  response.set_version(1);
  *response.mutable_reconstructions() = Scaled(request.measurements(), 0.5f);
  const int64_t rows = Rows(request.measurements());
  for (int64_t i = 0; i < rows; ++i) {
    response.add_iterations(i + 1);
    response.add_converged(i != 1);
    response.add_error_bound(1e-6 * static_cast<double>(i + 1));
    response.add_forward_residual(1e-5);
  }
  if (request.posterior_std()) {
    v1::Tensor* std = response.mutable_posterior_std();
    *std = request.measurements();
    const int64_t cols = request.measurements().shape(1);
    for (int64_t i = 0; i < rows; ++i) {
      for (int64_t j = 0; j < cols; ++j) {
        std->set_values(static_cast<int>(i * cols + j),
                        i == 2 ? std::nanf("") : 0.1f * static_cast<float>(i + 1));
      }
    }
    response.set_posterior_std_method("laplace-divergence");
  }
  return response;
}

// Estimate's scripted answer, for the estimators asked for: posterior mean y / 2, MAP y with
// objective i and gradient norm i / 4 for sample i, Wiener y / 4.
v1::EstimateResponse ScriptedEstimate(const v1::EstimateRequest& request) {
  v1::EstimateResponse response;
  response.set_model(request.model());
  response.set_version(1);
  const v1::Tensor& y = request.measurements();
  for (int asked : request.estimators()) {
    switch (asked) {
      case v1::ESTIMATOR_POSTERIOR_MEAN:
        *response.mutable_posterior_mean() = Scaled(y, 0.5f);
        break;
      case v1::ESTIMATOR_MAP:
        *response.mutable_map() = y;
        for (int64_t i = 0; i < Rows(y); ++i) {
          response.add_map_objective(static_cast<double>(i));
          response.add_map_gradient_norm(0.25 * static_cast<double>(i));
        }
        break;
      case v1::ESTIMATOR_WIENER:
        *response.mutable_wiener() = Scaled(y, 0.25f);
        break;
      default:
        ADD_FAILURE() << "estimator " << asked << " is not scripted";
    }
  }
  return response;
}

v1::TrainResponse Accepted(const v1::TrainingJob& job) {
  v1::TrainResponse response;
  *response.mutable_job() = job;
  return response;
}

// WatchTrainingJob's scripted stream: `updates`, in order, then the end of the stream.
auto Streams(std::vector<v1::TrainingJob> updates) {
  return [updates](const v1::WatchTrainingJobRequest&,
                   const std::function<void(const v1::WatchTrainingJobResponse&)>& on_update) {
    for (const v1::TrainingJob& job : updates) {
      v1::WatchTrainingJobResponse response;
      *response.mutable_job() = job;
      on_update(response);
    }
    return absl::OkStatus();
  };
}

grpc::health::v1::HealthCheckResponse Health(
    grpc::health::v1::HealthCheckResponse::ServingStatus status) {
  grpc::health::v1::HealthCheckResponse response;
  response.set_status(status);
  return response;
}

TEST_F(CliTest, HelpExitsZeroEverywhere) {
  EXPECT_EQ(Run({"--help"}), 0);
  EXPECT_THAT(out_.str(), HasSubstr("Usage: invnet <command>"));
  EXPECT_THAT(out_.str(), HasSubstr("reconstruct"));
  EXPECT_THAT(out_.str(),
              HasSubstr("Exit codes: 0 success, 1 runtime or RPC error, 2 usage error."));
  EXPECT_EQ(Run({"jobs", "list", "--help"}), 0);
  EXPECT_THAT(out_.str(), StartsWith("Usage: invnet jobs list [flags]"));
  EXPECT_EQ(Run({"reconstruct", "--help"}), 0);
  EXPECT_THAT(out_.str(), HasSubstr("--tolerance=TOL"));
  EXPECT_EQ(Run({"help", "datasets"}), 0);
  EXPECT_THAT(out_.str(), HasSubstr("datasets upload NAME"));
  EXPECT_EQ(Run({"help", "train"}), 0);
  EXPECT_THAT(out_.str(), HasSubstr("--detach"));
  EXPECT_EQ(connects_, 0);
}

TEST_F(CliTest, UsageErrorsExitTwoWithoutCallingTheServer) {
  const std::vector<std::vector<std::string>> cases = {
      {},
      {"frobnicate"},
      {"jobs"},
      {"jobs", "explode"},
      {"jobs", "show"},
      {"jobs", "show", "a", "b"},
      {"jobs", "list", "--steps=5"},
      {"health", "--model=blur"},
      {"reconstruct", "--input=y.csv"},
      {"reconstruct", "--model=blur"},
      {"reconstruct", "--model=blur", "--input=y.csv", "--output=x.txt"},
      {"forward", "--model=blur", "--input=y.txt"},
      {"reconstruct", "--model=blur", "--input=y.csv", "--tolerance=-1"},
      {"reconstruct", "--model=blur", "--input=y.csv", "--max_iterations=0"},
      {"estimate", "--model=blur", "--input=y.csv", "--estimators=median"},
      {"models", "delete", "blur", "--version=-3"},
      {"train", "--model=m", "--loss=logdet"},
      {"train", "--preset=blur64", "--loss=logdet"},
      {"train", "--preset=blur64", "--model=m"},
      {"train", "--preset=blur64", "--model=m", "--loss=magic"},
      {"train", "--preset=blur64", "--model=m", "--loss=logdet", "--steps=0"},
      {"train", "--preset=blur64", "--model=m", "--loss=logdet", "--target_space=latent"},
      {"train", "--preset=blur64", "--model=m", "--loss=logdet", "--dataset=digits"},
      {"health", "--server="},
      {"health", "--timeout=-1"},
      {"health", "--server=localhost"},
      {"health", "--server=127.0.0.1:99999"},
      {"health", "--server=127.0.0.1:0"},
      {"health", "--server=localhost:http"},
      {"health", "--server=::1"},
      {"pairs", "--model=blur", "--output=p.csv"},
      {"pairs", "--model=blur", "--count=0", "--output=p.csv"},
      {"pairs", "--model=blur", "--count=3"},
      {"reconstruct", "--model=blur", "--input=y.csv", "--chunk_rows=0"},
      {"reconstruct", "--model=blur", "--input=y.csv", "--diagnostics="},
      {"reconstruct", "--model=blur", "--input=y.csv", "--posterior_std="},
      {"reconstruct", "--model=blur", "--input=y.csv", "--posterior_std=std.txt"},
  };
  for (const auto& words : cases) {  // the strict mock fails any call
    SCOPED_TRACE(::testing::PrintToString(words));
    EXPECT_EQ(Run(words), 2);
    EXPECT_THAT(err_.str(), HasSubstr("Run 'invnet"));
    EXPECT_THAT(out_.str(), IsEmpty());
  }
}

TEST_F(CliTest, UsageErrorMessagesSayWhatIsWrong) {
  EXPECT_EQ(Run({"frobnicate"}), 2);
  EXPECT_EQ(err_.str(), "invnet: unknown command 'frobnicate'\nRun 'invnet --help' for usage.\n");
  EXPECT_EQ(Run({"jobs", "list", "--steps=5"}), 2);
  EXPECT_THAT(err_.str(), StartsWith("invnet: --steps does not apply to 'invnet jobs list'\n"
                                     "Run 'invnet jobs list --help' for usage."));
  EXPECT_EQ(Run({"reconstruct", "--input=y.csv"}), 2);
  EXPECT_THAT(err_.str(), HasSubstr("--model NAME is required"));
  EXPECT_EQ(Run({"jobs"}), 2);
  EXPECT_THAT(err_.str(), HasSubstr("'jobs' needs a subcommand: list, show, cancel, watch"));
}

TEST_F(CliTest, HealthPrintsTheStatus) {
  EXPECT_CALL(*connection_, Check(_, _, /*wait_for_ready=*/false))
      .WillOnce(Return(Health(grpc::health::v1::HealthCheckResponse::SERVING)))
      .WillOnce(Return(Health(grpc::health::v1::HealthCheckResponse::NOT_SERVING)));
  EXPECT_EQ(Run({"health", "--server=example:1234"}), 0);
  EXPECT_EQ(out_.str(), "SERVING\n");
  EXPECT_EQ(target_, "example:1234");
  EXPECT_EQ(Run({"health"}), 1);
  EXPECT_EQ(out_.str(), "NOT_SERVING\n");
  EXPECT_THAT(err_.str(), HasSubstr("UNAVAILABLE"));
  EXPECT_EQ(target_, "localhost:50051");
}

// The options only: that each call then carries its deadline is client_test's
// (ConfiguredDeadlinesAreApplied, over the wire).
TEST_F(CliTest, TimeoutFlagSetsEveryBoundedDeadline) {
  EXPECT_CALL(*connection_, ListModels(_)).Times(2).WillRepeatedly(Return(v1::ListModelsResponse()));
  EXPECT_EQ(Run({"models", "list", "--timeout=2"}), 0);
  EXPECT_EQ(options_.rpc_timeout, absl::Seconds(2));
  EXPECT_EQ(options_.compute_timeout, absl::Seconds(2));
  EXPECT_EQ(options_.watch_timeout, absl::InfiniteDuration());
  EXPECT_EQ(Run({"models", "list", "--timeout=0"}), 0);
  EXPECT_EQ(options_.rpc_timeout, absl::InfiniteDuration());
  EXPECT_EQ(options_.compute_timeout, absl::InfiniteDuration());
}

TEST_F(CliTest, SecurityFlagsReachTheClientOptionsOfEveryCommand) {
  unsetenv("INVNET_TOKEN_FILE");
  // The first call answers; then every call fails at once, so bench and experiment stop after
  // connecting.
  const absl::Status down = absl::UnavailableError("not listening");
  EXPECT_CALL(*connection_, ListModels(_))
      .WillOnce(Return(v1::ListModelsResponse()))
      .WillRepeatedly(Return(down));
  EXPECT_CALL(*connection_, Check(_, _, _)).WillRepeatedly(Return(down));
  EXPECT_CALL(*connection_, GetModel(_)).WillRepeatedly(Return(down));
  EXPECT_CALL(*connection_, Train(_)).WillRepeatedly(Return(down));
  EXPECT_EQ(Run({"models", "list"}), 0);
  EXPECT_FALSE(options_.use_tls);
  EXPECT_EQ(options_.token_file, "");
  const std::vector<std::string> security = {"--tls", "--tls_ca_file=ca.pem",
                                             "--tls_cert_file=client.pem",
                                             "--tls_key_file=client.key", "--token_file=t.token"};
  for (std::vector<std::string> words :
       std::vector<std::vector<std::string>>{{"models", "list"},
                                             {"health"},
                                             {"bench", "--model=blur", "--duration=0.1"},
                                             {"experiment", "--output_dir=" + Path("report")}}) {
    SCOPED_TRACE(words[0]);
    words.insert(words.end(), security.begin(), security.end());
    options_ = ClientOptions();
    EXPECT_EQ(Run(words), 1);
    EXPECT_TRUE(options_.use_tls);
    EXPECT_EQ(options_.tls_ca_file, "ca.pem");
    EXPECT_EQ(options_.tls_cert_file, "client.pem");
    EXPECT_EQ(options_.tls_key_file, "client.key");
    EXPECT_EQ(options_.token_file, "t.token");
  }
}

TEST_F(CliTest, TokenFileFallsBackToTheEnvironment) {
  EXPECT_CALL(*connection_, ListModels(_)).Times(2).WillRepeatedly(Return(v1::ListModelsResponse()));
  ASSERT_EQ(setenv("INVNET_TOKEN_FILE", "/etc/invnet/token", 1), 0);
  EXPECT_EQ(Run({"models", "list"}), 0);
  EXPECT_EQ(options_.token_file, "/etc/invnet/token");
  EXPECT_EQ(Run({"models", "list", "--token_file=mine"}), 0);
  EXPECT_EQ(options_.token_file, "mine");
  unsetenv("INVNET_TOKEN_FILE");
}

TEST_F(CliTest, TlsFilesWithoutTlsAreUsageErrors) {
  EXPECT_EQ(Run({"models", "list", "--tls_ca_file=ca.pem"}), 2);
  EXPECT_THAT(err_.str(), HasSubstr("--tls_ca_file needs --tls"));
  EXPECT_EQ(Run({"models", "list", "--tls", "--tls_cert_file=client.pem"}), 2);
  EXPECT_THAT(err_.str(), HasSubstr("--tls_cert_file and --tls_key_file go together"));
  EXPECT_EQ(connects_, 0);
  EXPECT_EQ(Run({"--help"}), 0);
  EXPECT_THAT(out_.str(), HasSubstr("--token_file=FILE"));
  EXPECT_THAT(out_.str(), HasSubstr("INVNET_TOKEN_FILE"));
}

TEST_F(CliTest, RpcErrorsExitOneWithCodeAndMessage) {
  EXPECT_CALL(*connection_, DeleteModel(_))
      .WillOnce(Return(absl::PermissionDeniedError("admin scope needed")));
  EXPECT_EQ(Run({"models", "delete", "blur", "--all_versions"}), 1);
  EXPECT_EQ(err_.str(), "invnet: error: PERMISSION_DENIED: admin scope needed\n");
}

TEST_F(CliTest, JobsListPrintsATable) {
  v1::ListTrainingJobsResponse jobs;
  *jobs.add_jobs() = MakeJob("job-2", "blur", v1::JOB_STATE_RUNNING, 150, 3000);
  *jobs.add_jobs() = MakeJob("job-1", "tiny", v1::JOB_STATE_SUCCEEDED, 100, 100);
  jobs.mutable_jobs(1)->mutable_created()->set_seconds(1700000000);
  EXPECT_CALL(*connection_, ListTrainingJobs(_)).WillOnce(Return(jobs));
  ASSERT_EQ(Run({"jobs", "list"}), 0) << err_.str();
  EXPECT_EQ(out_.str(),
            "JOB    MODEL  STATE      STEP      LOSS  ELAPSED  VERSION  CREATED\n"
            "job-2  blur   running    150/3000  0.5   15s      -        -\n"
            "job-1  tiny   succeeded  100/100   0.5   10s      1        2023-11-14 22:13:20\n");
}

TEST_F(CliTest, EmptyListsSaySo) {
  EXPECT_CALL(*connection_, ListTrainingJobs(_)).WillOnce(Return(v1::ListTrainingJobsResponse()));
  EXPECT_CALL(*connection_, ListDatasets(_)).WillOnce(Return(v1::ListDatasetsResponse()));
  EXPECT_EQ(Run({"jobs", "list"}), 0);
  EXPECT_EQ(out_.str(), "no training jobs\n");
  EXPECT_EQ(Run({"datasets", "list"}), 0);
  EXPECT_EQ(out_.str(), "no datasets\n");
}

TEST_F(CliTest, JobsShowAndCancel) {
  v1::GetTrainingJobResponse shown;
  *shown.mutable_job() = MakeJob("job-7", "blur", v1::JOB_STATE_RUNNING, 150, 3000);
  v1::CancelTrainingJobResponse cancelled;
  *cancelled.mutable_job() = MakeJob("job-7", "blur", v1::JOB_STATE_CANCELLED, 150, 3000);
  v1::GetTrainingJobRequest asked;
  EXPECT_CALL(*connection_, GetTrainingJob(_))
      .WillOnce(DoAll(SaveArg<0>(&asked), Return(shown)))
      .WillOnce(Return(absl::NotFoundError("job job-8")));
  EXPECT_CALL(*connection_, CancelTrainingJob(_))
      .WillOnce(Return(cancelled))
      .WillOnce(Return(absl::FailedPreconditionError("job job-7 has finished")));
  ASSERT_EQ(Run({"jobs", "show", "job-7"}), 0) << err_.str();
  EXPECT_EQ(asked.job_id(), "job-7");
  EXPECT_THAT(out_.str(), HasSubstr("job:            job-7\n"));
  EXPECT_THAT(out_.str(), HasSubstr("progress:       150/3000 steps (5.0%)\n"));
  EXPECT_EQ(Run({"jobs", "show", "job-8"}), 1);
  EXPECT_THAT(err_.str(), HasSubstr("NOT_FOUND: job job-8"));
  EXPECT_EQ(Run({"jobs", "cancel", "job-7"}), 0);
  EXPECT_EQ(out_.str(), "job job-7 cancelled\n");
  EXPECT_EQ(Run({"jobs", "cancel", "job-7"}), 1);
  EXPECT_THAT(err_.str(), HasSubstr("FAILED_PRECONDITION"));
}

TEST_F(CliTest, ModelsListShowAndDelete) {
  v1::ListModelsResponse listed;
  *listed.add_models() = MakeModel("blur", 2, 3, 3);
  v1::GetModelResponse got;
  *got.mutable_model() = MakeModel("blur", 2, 3, 3);
  std::vector<v1::DeleteModelRequest> deleted;
  EXPECT_CALL(*connection_, ListModels(_)).WillOnce(Return(listed));
  EXPECT_CALL(*connection_, GetModel(_)).Times(2).WillRepeatedly(Return(got));
  EXPECT_CALL(*connection_, DeleteModel(_))
      .Times(2)
      .WillRepeatedly([&deleted](const v1::DeleteModelRequest& request) {
        deleted.push_back(request);
        return v1::DeleteModelResponse();
      });
  ASSERT_EQ(Run({"models", "list"}), 0) << err_.str();
  EXPECT_EQ(
      out_.str(),
      "MODEL  VERSIONS  LATEST  OPERATOR       DIMS     LOSS     VAL_MSE  CREATED\n"
      "blur   2         2       identity(n=3)  m=3 n=3  log-det  0.125    2023-11-14 22:13:22\n");
  ASSERT_EQ(Run({"models", "show", "blur", "--version=1"}), 0);
  EXPECT_THAT(out_.str(), StartsWith("model blur version 1\n"));
  EXPECT_THAT(out_.str(), Not(HasSubstr("version 2")));
  EXPECT_THAT(out_.str(), HasSubstr("val_mse:"));
  EXPECT_EQ(Run({"models", "show", "blur", "--version=9"}), 1);
  EXPECT_THAT(err_.str(), HasSubstr("NOT_FOUND: model blur has no version 9"));
  ASSERT_EQ(Run({"models", "delete", "blur", "--version=2"}), 0);
  EXPECT_EQ(out_.str(), "deleted version 2 of model blur\n");
  // Deleting every version must be asked for; neither or both flags is a usage error.
  EXPECT_EQ(Run({"models", "delete", "blur"}), 2);
  EXPECT_EQ(Run({"models", "delete", "blur", "--version=1", "--all_versions"}), 2);
  ASSERT_EQ(Run({"models", "delete", "blur", "--all_versions"}), 0);
  EXPECT_THAT(out_.str(), HasSubstr("every version"));
  ASSERT_EQ(deleted.size(), 2u);
  EXPECT_EQ(deleted[0].name(), "blur");
  EXPECT_EQ(deleted[0].version(), 2);
  EXPECT_FALSE(deleted[0].all_versions());
  EXPECT_TRUE(deleted[1].all_versions());
}

TEST_F(CliTest, DatasetsUploadListDelete) {
  WriteText("points.csv", "x,y\n1,2\n3,4\n5,6\n");
  // The upload streams what the client's `next` hands out: the header, then the chunks.
  std::vector<v1::UploadDatasetRequest> streamed;
  EXPECT_CALL(*connection_, UploadDataset(_))
      .WillOnce([&streamed](const std::function<bool(v1::UploadDatasetRequest*)>& next)
                    -> absl::StatusOr<v1::UploadDatasetResponse> {
        v1::UploadDatasetRequest message;
        while (next(&message)) streamed.push_back(message);
        v1::UploadDatasetResponse response;
        v1::Dataset* dataset = response.mutable_dataset();
        dataset->set_name(streamed[0].header().name());
        dataset->set_dim(streamed[0].header().dim());
        dataset->set_num_samples(streamed[0].header().num_samples());
        dataset->set_size_bytes(24);
        return response;
      })
      .WillOnce(Return(absl::AlreadyExistsError("dataset points exists")));
  v1::ListDatasetsResponse listed;
  v1::Dataset* points = listed.add_datasets();
  points->set_name("points");
  points->set_dim(2);
  points->set_num_samples(3);
  points->set_size_bytes(24);
  EXPECT_CALL(*connection_, ListDatasets(_)).WillOnce(Return(listed));
  EXPECT_CALL(*connection_, DeleteDataset(_))
      .WillOnce(Return(v1::DeleteDatasetResponse()))
      .WillOnce(Return(absl::NotFoundError("dataset points")));

  ASSERT_EQ(
      Run({"datasets", "upload", "points", "--input=" + Path("points.csv"), "--rows_per_chunk=2"}),
      0)
      << err_.str();
  EXPECT_EQ(out_.str(), "uploaded dataset points: 3 samples of dimension 2 (24 B)\n");
  ASSERT_EQ(streamed.size(), 3u);  // header + 2 chunks
  EXPECT_EQ(streamed[0].header().name(), "points");
  EXPECT_EQ(streamed[0].header().dim(), 2);
  EXPECT_EQ(streamed[0].header().num_samples(), 3);
  EXPECT_THAT(streamed[1].chunk().values(), ElementsAre(1, 2, 3, 4));
  EXPECT_THAT(streamed[2].chunk().values(), ElementsAre(5, 6));
  ASSERT_EQ(Run({"datasets", "list"}), 0);
  EXPECT_EQ(out_.str(),
            "DATASET  DIM  SAMPLES  SIZE  CREATED\n"
            "points   2    3        24 B  -\n");
  EXPECT_EQ(Run({"datasets", "upload", "points", "--input=" + Path("points.csv")}), 1);
  EXPECT_THAT(err_.str(), HasSubstr("ALREADY_EXISTS"));
  ASSERT_EQ(Run({"datasets", "delete", "points"}), 0);
  EXPECT_EQ(Run({"datasets", "delete", "points"}), 1);
}

TEST_F(CliTest, ReconstructReadsInputAndWritesOutput) {
  WriteText("y.csv", "1,2,3\n4,5,6\n7,8,9\n");
  v1::ReconstructRequest request;
  EXPECT_CALL(*connection_, Reconstruct(_))
      .WillOnce([&request](const v1::ReconstructRequest& r) {
        request = r;
        return HalfOfY(r);
      });
  ASSERT_EQ(Run({"reconstruct", "--model=blur", "--input=" + Path("y.csv"),
                 "--output=" + Path("x.npy"), "--tolerance=1e-4", "--anderson"}),
            0)
      << err_.str();
  absl::StatusOr<DenseTensor> x = ReadMatrix(Path("x.npy"));
  ASSERT_THAT(x, IsOk());
  EXPECT_THAT(x->shape, ElementsAre(3, 3));
  EXPECT_THAT(x->values, ElementsAre(0.5, 1, 1.5, 2, 2.5, 3, 3.5, 4, 4.5));
  EXPECT_EQ(request.model(), "blur");
  EXPECT_EQ(request.version(), 0);
  EXPECT_THAT(request.measurements().shape(), ElementsAre(3, 3));
  EXPECT_THAT(request.measurements().values(), ElementsAre(1, 2, 3, 4, 5, 6, 7, 8, 9));
  EXPECT_DOUBLE_EQ(request.solver().tolerance(), 1e-4);
  EXPECT_TRUE(request.solver().anderson());
  EXPECT_FALSE(request.solver().has_max_iterations());  // not given: the server's default
  const std::string summary = err_.str();
  EXPECT_THAT(summary,
              HasSubstr("reconstructed 3 samples (dimension 3) with model blur version 1"));
  EXPECT_THAT(summary, HasSubstr("iterations:            mean 2, max 3"));
  EXPECT_THAT(summary, HasSubstr("converged:             2/3 (66.7%)"));
  EXPECT_THAT(summary, HasSubstr("max error bound:       3e-06"));
  EXPECT_THAT(summary, HasSubstr("warning: 1 of 3 samples did not converge"));
  EXPECT_THAT(out_.str(), IsEmpty());
}

TEST_F(CliTest, ReconstructWritesTheNetworksPosteriorStd) {
  WriteText("y.csv", "1,2,3\n4,5,6\n7,8,9\n1,1,1\n");
  std::vector<bool> asked_for_std;
  EXPECT_CALL(*connection_, Reconstruct(_))
      .Times(3)
      .WillRepeatedly([&asked_for_std](const v1::ReconstructRequest& r) {
        asked_for_std.push_back(r.posterior_std());
        return HalfOfY(r);
      });
  ASSERT_EQ(Run({"reconstruct", "--model=blur", "--input=" + Path("y.csv"),
                 "--output=" + Path("x.csv"), "--posterior_std=" + Path("std.csv"),
                 "--chunk_rows=3"}),
            0)
      << err_.str();
  // Two requests (3 + 1 rows), concatenated; row 2 of each answer is NaN.
  EXPECT_EQ(ReadText("std.csv"), "0.1,0.1,0.1\n0.2,0.2,0.2\nnan,nan,nan\n0.1,0.1,0.1\n");
  const std::string summary = err_.str();
  EXPECT_THAT(summary, HasSubstr("posterior std (laplace-divergence, from the network's "
                                 "Jacobian) -> " + Path("std.csv")));
  EXPECT_THAT(summary, HasSubstr("mean:  0.1333, 0.1333, 0.1333 per component; undefined (NaN) "
                                 "in 1 of 4 samples"));
  // Not asked for: not requested.
  ASSERT_EQ(Run({"reconstruct", "--model=blur", "--input=" + Path("y.csv"),
                 "--output=" + Path("x.csv")}),
            0);
  EXPECT_THAT(asked_for_std, ElementsAre(true, true, false));
}

TEST_F(CliTest, ReconstructWithoutOutputPrintsCsv) {
  WriteText("y.csv", "2,4,6\n");
  EXPECT_CALL(*connection_, Reconstruct(_)).WillOnce(HalfOfY);
  ASSERT_EQ(Run({"reconstruct", "--model=blur", "--input=" + Path("y.csv")}), 0) << err_.str();
  EXPECT_EQ(out_.str(), "1,2,3\n");
}

TEST_F(CliTest, ReconstructRejectsBadInputFilesBeforeSending) {
  WriteText("nan.csv", "1,nan,3\n");
  EXPECT_EQ(Run({"reconstruct", "--model=blur", "--input=" + Path("nan.csv")}), 1);
  // Rows and columns count from 1, as the CSV reader's line numbers do.
  EXPECT_THAT(err_.str(), HasSubstr("INVALID_ARGUMENT: " + Path("nan.csv") + ": row 1, column 2"));
  WriteText("ragged.csv", "1,2\n3\n");
  EXPECT_EQ(Run({"reconstruct", "--model=blur", "--input=" + Path("ragged.csv")}), 1);
  EXPECT_THAT(err_.str(), HasSubstr("line 2 has 1 values"));
  EXPECT_EQ(Run({"reconstruct", "--model=blur", "--input=" + Path("absent.npy")}), 1);
  EXPECT_THAT(err_.str(), HasSubstr("NOT_FOUND"));
}

TEST_F(CliTest, ReconstructServerErrorsExitOne) {
  WriteText("y.csv", "1,2,3\n");
  EXPECT_CALL(*connection_, Reconstruct(_)).WillOnce(Return(absl::NotFoundError("model ghost")));
  EXPECT_EQ(Run({"reconstruct", "--model=ghost", "--input=" + Path("y.csv")}), 1);
  EXPECT_THAT(err_.str(), HasSubstr("NOT_FOUND: model ghost"));
}

TEST_F(CliTest, ForwardWritesCsv) {
  WriteText("x.csv", "1,2,3\n");
  v1::ForwardRequest request;
  EXPECT_CALL(*connection_, Forward(_)).WillOnce([&request](const v1::ForwardRequest& r) {
    request = r;
    v1::ForwardResponse response;
    *response.mutable_outputs() = Scaled(r.signals(), 2);
    return response;
  });
  ASSERT_EQ(
      Run({"forward", "--model=blur", "--input=" + Path("x.csv"), "--output=" + Path("phi.csv")}),
      0)
      << err_.str();
  EXPECT_EQ(request.model(), "blur");
  EXPECT_THAT(request.signals().values(), ElementsAre(1, 2, 3));
  EXPECT_EQ(*ReadFileToString(Path("phi.csv")), "2,4,6\n");
  EXPECT_THAT(err_.str(), HasSubstr("phi(x) for 1 samples"));
}

TEST_F(CliTest, EstimateWritesOneFilePerEstimator) {
  WriteText("y.csv", "2,4,6\n8,10,12\n");
  std::vector<v1::EstimateRequest> requests;
  EXPECT_CALL(*connection_, Estimate(_))
      .Times(2)
      .WillRepeatedly([&requests](const v1::EstimateRequest& r) {
        requests.push_back(r);
        return ScriptedEstimate(r);
      });
  ASSERT_EQ(Run({"estimate", "--model=blur", "--input=" + Path("y.csv"),
                 "--output=" + Path("est.npy"), "--estimators=posterior_mean, map"}),
            0)
      << err_.str();
  EXPECT_THAT(requests[0].estimators(),
              ElementsAre(v1::ESTIMATOR_POSTERIOR_MEAN, v1::ESTIMATOR_MAP));
  absl::StatusOr<DenseTensor> mean = ReadMatrix(Path("est.posterior_mean.npy"));
  ASSERT_THAT(mean, IsOk());
  EXPECT_THAT(mean->values, ElementsAre(1, 2, 3, 4, 5, 6));
  ASSERT_THAT(ReadMatrix(Path("est.map.npy")), IsOk());
  EXPECT_THAT(err_.str(), HasSubstr("estimators:     posterior_mean, map"));
  EXPECT_THAT(err_.str(), HasSubstr("map objective:  mean 0.5, max 1"));
  EXPECT_THAT(err_.str(), HasSubstr("map grad norm:  mean 0.125, max 0.25"));

  ASSERT_EQ(Run({"estimate", "--model=blur", "--input=" + Path("y.csv"),
                 "--output=" + Path("wiener.csv"), "--estimators=wiener"}),
            0);
  EXPECT_THAT(requests[1].estimators(), ElementsAre(v1::ESTIMATOR_WIENER));
  EXPECT_EQ(*ReadFileToString(Path("wiener.csv")), "0.5,1,1.5\n2,2.5,3\n");
}

TEST_F(CliTest, TrainDetachPrintsTheJobId) {
  v1::TrainRequest request;
  EXPECT_CALL(*connection_, Train(_))
      .WillOnce(DoAll(SaveArg<0>(&request),
                      Return(Accepted(MakeJob("job-1", "m1", v1::JOB_STATE_QUEUED, 0, 20)))));
  ASSERT_EQ(Run({"train", "--preset=bimodal2d", "--model=m1", "--loss=divergence", "--steps=20",
                 "--detach"}),
            0)
      << err_.str();
  EXPECT_EQ(out_.str(), "job-1\n");
  EXPECT_EQ(request.preset(), "bimodal2d");
  EXPECT_EQ(request.model_name(), "m1");
  EXPECT_EQ(request.training().loss(), v1::LOSS_DIVERGENCE);
  EXPECT_EQ(request.training().steps(), 20);
  EXPECT_FALSE(request.training().has_batch_size());
}

TEST_F(CliTest, TrainFollowsTheJobToSuccess) {
  const v1::TrainingJob queued = MakeJob("job-1", "m1", v1::JOB_STATE_QUEUED, 0, 100);
  EXPECT_CALL(*connection_, Train(_)).Times(2).WillRepeatedly(Return(Accepted(queued)));
  v1::WatchTrainingJobRequest watched;
  EXPECT_CALL(*connection_, WatchTrainingJob(_, _))
      .Times(2)
      .WillRepeatedly(DoAll(SaveArg<0>(&watched),
                            Streams({queued, MakeJob("job-1", "m1", v1::JOB_STATE_RUNNING, 50, 100),
                                     MakeJob("job-1", "m1", v1::JOB_STATE_SUCCEEDED, 100, 100)})));
  ASSERT_EQ(Run({"train", "--preset=bimodal2d", "--model=m1", "--loss=logdet"}), 0) << err_.str();
  EXPECT_EQ(watched.job_id(), "job-1");
  EXPECT_THAT(out_.str(), StartsWith("job job-1 succeeded: model m1 version 1 (100 steps"));
  EXPECT_THAT(err_.str(), HasSubstr("job job-1 started"));
  EXPECT_THAT(err_.str(), HasSubstr("job job-1: running  step 50/100 (50%)"));
  EXPECT_THAT(err_.str(), Not(HasSubstr("\r")));

  // On a terminal: one live line.
  ASSERT_EQ(Run({"train", "--preset=bimodal2d", "--model=m1", "--loss=logdet"}, true), 0);
  EXPECT_THAT(err_.str(), HasSubstr("\r[###############---------------] running"));
}

TEST_F(CliTest, TrainExitsOneWhenTheJobFails) {
  v1::TrainingJob failed = MakeJob("job-1", "m1", v1::JOB_STATE_FAILED, 10, 100);
  failed.set_error("loss became NaN at step 10");
  EXPECT_CALL(*connection_, Train(_))
      .WillOnce(Return(Accepted(MakeJob("job-1", "m1", v1::JOB_STATE_QUEUED, 0, 100))));
  EXPECT_CALL(*connection_, WatchTrainingJob(_, _)).Times(2).WillRepeatedly(Streams({failed}));
  EXPECT_EQ(Run({"train", "--preset=bimodal2d", "--model=m1", "--loss=logdet"}), 1);
  EXPECT_THAT(err_.str(), HasSubstr("job job-1 failed: loss became NaN at step 10"));
  EXPECT_EQ(Run({"jobs", "watch", "job-1"}), 1);
}

TEST_F(CliTest, TrainRequestFromSpecWithFlagOverrides) {
  WriteText("spec.txt",
            "# a TrainRequest in text format\n"
            "model_name: \"from-spec\"\n"
            "problem {\n"
            "  operator { identity { dim: 2 } }\n"
            "  noise_level: 0.1\n"
            "}\n"
            "architecture { num_blocks: 2 }\n"
            "training { loss: LOSS_APPROXIMATION steps: 100 batch_size: 64 }\n");
  Invocation inv =
      Parse({"train", "--spec=" + Path("spec.txt"), "--steps=5", "--learning_rate=0.01",
             "--loss=reconstruction", "--dataset=digits", "--target_space=normal", "--seed=7"});
  absl::StatusOr<v1::TrainRequest> request = BuildTrainRequest(inv);
  ASSERT_THAT(request, IsOk());
  EXPECT_EQ(request->model_name(), "from-spec");
  EXPECT_EQ(request->preset(), "");
  EXPECT_EQ(request->problem().operator_().identity().dim(), 2);
  EXPECT_EQ(request->problem().dataset(), "digits");
  EXPECT_EQ(request->architecture().num_blocks(), 2);
  EXPECT_EQ(request->training().loss(), v1::LOSS_RECONSTRUCTION);
  EXPECT_EQ(request->training().steps(), 5);
  EXPECT_EQ(request->training().batch_size(), 64);
  EXPECT_DOUBLE_EQ(request->training().learning_rate(), 0.01);
  EXPECT_EQ(request->training().target_space(), v1::TARGET_SPACE_NORMAL);
  EXPECT_EQ(request->training().seed(), 7u);
  EXPECT_FALSE(request->training().has_warmup_steps());
}

TEST_F(CliTest, MalformedSpecIsAFileErrorWithItsPosition) {
  WriteText("bad.txt", "model_name: \"x\"\ntraining { loss: LOSS_NOPE }\n");
  Invocation inv = Parse({"train", "--spec=" + Path("bad.txt")});
  EXPECT_THAT(BuildTrainRequest(inv),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("bad.txt: not a TrainRequest in text format: line 2")));
  EXPECT_EQ(Run({"train", "--spec=" + Path("bad.txt")}), 1);
  EXPECT_EQ(Run({"train", "--spec=" + Path("missing.txt"), "--loss=logdet"}), 1);
  EXPECT_THAT(err_.str(), HasSubstr("NOT_FOUND"));
}

TEST(ExitCodeTest, MapsStatuses) {
  EXPECT_EQ(ExitCode(absl::OkStatus()), 0);
  EXPECT_EQ(ExitCode(UsageError("bad flag")), 2);
  EXPECT_EQ(ExitCode(absl::InvalidArgumentError("bad tensor")), 1);
  EXPECT_EQ(ExitCode(absl::UnavailableError("down")), 1);
  EXPECT_TRUE(IsUsageError(UsageError("x")));
  EXPECT_EQ(UsageError("x").code(), absl::StatusCode::kInvalidArgument);
}

TEST(FlagDocsTest, EveryCommandFlagIsDocumented) {
  // FlagHelp feeds the binary's flag definitions: every flag has a help text.
  for (const FlagInfo& flag : AllFlags()) EXPECT_NE(FlagHelp(flag.name), "") << flag.name;
  EXPECT_EQ(FlagHelp("no_such_flag"), "");
}

TEST_F(CliTest, VersionPrintsTheProjectVersion) {
  Invocation inv;
  inv.version_requested = true;
  EXPECT_EQ(RunInvocation(inv), 0);
  EXPECT_EQ(out_.str(), absl::StrCat("invnet ", INVNET_EXPECTED_VERSION, "\n"));
  // With a command, --version is the model version and needs its value.
  inv.args = {"reconstruct"};
  EXPECT_EQ(RunInvocation(inv), 2);
  EXPECT_THAT(err_.str(), HasSubstr("--version needs a value N"));
  EXPECT_EQ(connects_, 0);
}

TEST_F(CliTest, HelpFullListsEveryFlagWithItsCommands) {
  Invocation inv;
  inv.help = inv.help_full = true;
  EXPECT_EQ(RunInvocation(inv), 0);
  for (const FlagInfo& flag : AllFlags()) {
    EXPECT_THAT(out_.str(), HasSubstr(absl::StrCat("--", flag.name))) << flag.name;
  }
  EXPECT_THAT(out_.str(), HasSubstr("All flags:"));
  EXPECT_THAT(out_.str(), HasSubstr("[reconstruct]"));  // --diagnostics
}

TEST_F(CliTest, UnknownFlagsSuggestTheNearestAndTheCommandsHelp) {
  Invocation inv;
  inv.args = {"reconstruct"};
  inv.unknown_flags = {"modle"};
  EXPECT_EQ(RunInvocation(inv), 2);
  EXPECT_THAT(err_.str(), HasSubstr("unknown flag '--modle'; did you mean --model?"));
  EXPECT_THAT(err_.str(), HasSubstr("Run 'invnet reconstruct --help' for usage."));
  // A flag of another command: said so.
  inv.args = {"health"};
  inv.unknown_flags = {"tolerence"};
  EXPECT_EQ(RunInvocation(inv), 2);
  EXPECT_THAT(err_.str(), HasSubstr("--tolerance exists but does not apply to 'invnet health'"));
  // Nothing near: no suggestion.
  inv.unknown_flags = {"zzzzzzzz"};
  EXPECT_EQ(RunInvocation(inv), 2);
  EXPECT_THAT(err_.str(), Not(HasSubstr("did you mean")));
  EXPECT_EQ(NearestFlag("outptu"), "output");
  EXPECT_EQ(NearestFlag("chunk_row"), "chunk_rows");
  EXPECT_EQ(connects_, 0);
}

TEST_F(CliTest, ServerAddressNeedsAPortInRange) {
  EXPECT_EQ(Run({"health", "--server=localhost"}), 2);
  EXPECT_THAT(err_.str(), HasSubstr("--server 'localhost' needs a port: HOST:PORT"));
  EXPECT_EQ(Run({"health", "--server=127.0.0.1:99999"}), 2);
  EXPECT_THAT(err_.str(), HasSubstr("must be a number in 1..65535"));
  for (const char* good : {"localhost:50051", "127.0.0.1:1", "[::1]:65535", "dns:///h:50051",
                           "unix:/tmp/invnet.sock"}) {
    EXPECT_THAT(CheckServerAddress(good), IsOk()) << good;
  }
  EXPECT_EQ(connects_, 0);
}

TEST_F(CliTest, UnreachableServerSaysWhereItLooked) {
  EXPECT_CALL(*connection_, ListModels(_))
      .WillOnce(Return(absl::UnavailableError(
          "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:1: Failed to "
          "connect to remote host: Connection refused")))
      // A server that answered UNAVAILABLE itself (shutting down) is not "not running".
      .WillOnce(Return(absl::UnavailableError("the server is shutting down")));
  EXPECT_EQ(Run({"models", "list", "--server=127.0.0.1:1"}), 1);
  EXPECT_THAT(err_.str(), HasSubstr("; is invnet-server running at 127.0.0.1:1? (--server)"));
  EXPECT_EQ(Run({"models", "list"}), 1);
  EXPECT_THAT(err_.str(), Not(HasSubstr("is invnet-server running")));
  EXPECT_THAT(err_.str(), HasSubstr("(server localhost:50051)"));
}

TEST_F(CliTest, JobsShowResolvesTheDefaultLossWeight) {
  v1::GetTrainingJobResponse shown;
  v1::TrainingJob& job = *shown.mutable_job();
  job = MakeJob("job-7", "blur", v1::JOB_STATE_RUNNING, 150, 3000);
  job.mutable_training()->set_loss(v1::LOSS_LOG_DET);
  job.mutable_training()->set_loss_weight(-1);  // an older server's mark for delta^2
  job.mutable_problem()->set_noise_level(0.2);
  EXPECT_CALL(*connection_, GetTrainingJob(_)).Times(2).WillRepeatedly([&shown](const auto&) {
    return shown;
  });
  ASSERT_EQ(Run({"jobs", "show", "job-7"}), 0) << err_.str();
  EXPECT_THAT(out_.str(), HasSubstr("loss log-det (weight default delta^2 = 0.04)"));
  EXPECT_THAT(out_.str(), Not(HasSubstr("-1")));
  job.mutable_training()->set_loss_weight(0.5);
  ASSERT_EQ(Run({"jobs", "show", "job-7"}), 0) << err_.str();
  EXPECT_THAT(out_.str(), HasSubstr("loss log-det (weight 0.5)"));
}

TEST_F(CliTest, JobsShowSaysWhyTheTargetSpaceAndTheWarnings) {
  v1::GetTrainingJobResponse shown;
  v1::TrainingJob& job = *shown.mutable_job();
  job = MakeJob("job-7", "blur", v1::JOB_STATE_RUNNING, 150, 3000);
  job.mutable_training()->set_loss(v1::LOSS_LOG_DET);
  job.mutable_training()->set_target_space(v1::TARGET_SPACE_NORMAL);
  job.set_target_space_reason("default for a non-square operator");
  job.add_warnings("log-det loss in normal space: unsupported by the theory");
  EXPECT_CALL(*connection_, GetTrainingJob(_)).Times(2).WillRepeatedly([&shown](const auto&) {
    return shown;
  });
  ASSERT_EQ(Run({"jobs", "show", "job-7"}), 0) << err_.str();
  EXPECT_THAT(out_.str(),
              HasSubstr("target space:   normal (default for a non-square operator)\n"));
  EXPECT_THAT(out_.str(),
              HasSubstr("warning:        log-det loss in normal space: unsupported by the theory\n"));
  job.clear_target_space_reason();  // set by the request
  job.clear_warnings();
  ASSERT_EQ(Run({"jobs", "show", "job-7"}), 0) << err_.str();
  EXPECT_THAT(out_.str(), HasSubstr("target space:   normal\n"));
  EXPECT_THAT(out_.str(), Not(HasSubstr("warning")));
}

TEST_F(CliTest, ModelsShowPrintsTheWarnings) {
  v1::GetModelResponse got;
  *got.mutable_model() = MakeModel("blur", 2, 3, 3);
  got.mutable_model()->mutable_versions(0)->add_warnings("divergence loss in measurement space");
  EXPECT_CALL(*connection_, GetModel(_)).Times(2).WillRepeatedly(Return(got));
  ASSERT_EQ(Run({"models", "show", "blur", "--version=1"}), 0) << err_.str();
  EXPECT_THAT(out_.str(), HasSubstr("  warning:"));
  EXPECT_THAT(out_.str(), HasSubstr("divergence loss in measurement space\n"));
  ASSERT_EQ(Run({"models", "show", "blur", "--version=2"}), 0) << err_.str();
  EXPECT_THAT(out_.str(), Not(HasSubstr("warning")));
}

// A running job on the server stays RUNNING until its next step.
TEST_F(CliTest, JobsCancelSaysWhatHappened) {
  v1::CancelTrainingJobResponse answer;
  *answer.mutable_job() = MakeJob("job-7", "blur", v1::JOB_STATE_RUNNING, 150, 3000);
  EXPECT_CALL(*connection_, CancelTrainingJob(_)).WillOnce(Return(answer));
  ASSERT_EQ(Run({"jobs", "cancel", "job-7"}), 0) << err_.str();
  EXPECT_THAT(out_.str(), StartsWith("job job-7: cancel requested"));
  EXPECT_THAT(out_.str(), Not(HasSubstr("running")));
}

TEST_F(CliTest, TrainTellsTheInterruptHandlerThatTheJobGoesOn) {
  EXPECT_CALL(*connection_, Train(_))
      .WillOnce(Return(Accepted(MakeJob("job-1", "m1", v1::JOB_STATE_QUEUED, 0, 10))));
  EXPECT_CALL(*connection_, WatchTrainingJob(_, _))
      .Times(2)
      .WillRepeatedly(Streams({MakeJob("job-1", "m1", v1::JOB_STATE_SUCCEEDED, 10, 10)}));
  ASSERT_EQ(Run({"train", "--preset=bimodal2d", "--model=m1", "--loss=log-det"}), 0) << err_.str();
  EXPECT_THAT(interrupt_messages_,
              ElementsAre("job job-1 keeps running on the server; `invnet jobs cancel job-1` "
                          "stops it",
                          ""));
  interrupt_messages_.clear();
  ASSERT_EQ(Run({"jobs", "watch", "job-1"}), 0) << err_.str();
  EXPECT_THAT(interrupt_messages_,
              ElementsAre(HasSubstr("job job-1 keeps running on the server"), ""));
}

TEST_F(CliTest, ModelsDeleteHelpPromisesNoDefaultVersion) {
  ASSERT_EQ(Run({"models", "delete", "--help"}), 0);
  EXPECT_THAT(out_.str(), HasSubstr("models delete: no default"));
  EXPECT_THAT(out_.str(), Not(HasSubstr("(default: the latest)")));
}

TEST_F(CliTest, EveryLossSpellingIsAcceptedAndOneIsPrinted) {
  for (const char* spelling : {"log-det", "logdet", "log_det", "LOSS_LOG_DET", "LogDet"}) {
    SCOPED_TRACE(spelling);
    absl::StatusOr<v1::TrainRequest> request = BuildTrainRequest(
        Parse({"train", "--preset=blur64", "--model=m", std::string("--loss=") + spelling}));
    ASSERT_THAT(request, IsOk());
    EXPECT_EQ(request->training().loss(), v1::LOSS_LOG_DET);
  }
  EXPECT_EQ(Run({"train", "--preset=blur64", "--model=m", "--loss=logdeterminant"}), 2);
  EXPECT_THAT(err_.str(), HasSubstr("approximation, reconstruction, log-det, divergence"));
  ASSERT_EQ(Run({"train", "--help"}), 0);
  EXPECT_THAT(out_.str(), HasSubstr("approximation, reconstruction, log-det or divergence"));
}

TEST_F(CliTest, PairsWritesAnXAndAYFile) {
  v1::DrawTestPairsRequest request;
  v1::DrawTestPairsResponse pairs;
  for (v1::Tensor* t : {pairs.mutable_signals(), pairs.mutable_measurements()}) {
    t->add_shape(4);
    t->add_shape(3);
    for (int i = 0; i < 12; ++i) t->add_values(t == pairs.mutable_signals() ? i : 100 + i);
  }
  EXPECT_CALL(*connection_, DrawTestPairs(_))
      .WillOnce(DoAll(SaveArg<0>(&request), Return(pairs)));
  ASSERT_EQ(Run({"pairs", "--model=blur", "--count=4", "--seed=9", "--output=" + Path("p.csv")}), 0)
      << err_.str();
  EXPECT_EQ(request.model(), "blur");
  EXPECT_EQ(request.count(), 4);
  EXPECT_EQ(request.seed(), 9u);
  absl::StatusOr<DenseTensor> x = ReadMatrix(Path("p.x.csv"));
  absl::StatusOr<DenseTensor> y = ReadMatrix(Path("p.y.csv"));
  ASSERT_THAT(x, IsOk());
  ASSERT_THAT(y, IsOk());
  EXPECT_THAT(x->shape, ElementsAre(4, 3));
  EXPECT_THAT(y->shape, ElementsAre(4, 3));
  EXPECT_EQ(x->at(3, 2), 11);
  EXPECT_EQ(y->at(1, 0), 103);
  EXPECT_THAT(err_.str(), HasSubstr(Path("p.x.csv")));
  EXPECT_THAT(err_.str(), HasSubstr(Path("p.y.csv")));
}

TEST_F(CliTest, ReconstructInChunksWithDiagnostics) {
  WriteText("y.csv", "2,4,6\n8,10,12\n14,16,18\n20,22,24\n26,28,30\n");
  std::vector<int64_t> rows;
  EXPECT_CALL(*connection_, Reconstruct(_))
      .Times(3)
      .WillRepeatedly([&rows](const v1::ReconstructRequest& r) {
        rows.push_back(Rows(r.measurements()));
        return HalfOfY(r);
      });
  ASSERT_EQ(
      Run({"reconstruct", "--model=blur", "--input=" + Path("y.csv"), "--output=" + Path("x.csv"),
           "--chunk_rows=2", "--diagnostics=" + Path("diag.csv")}),
      0)
      << err_.str();
  EXPECT_THAT(rows, ElementsAre(2, 2, 1));
  absl::StatusOr<DenseTensor> x = ReadMatrix(Path("x.csv"));
  ASSERT_THAT(x, IsOk());
  EXPECT_THAT(x->shape, ElementsAre(5, 3));
  EXPECT_EQ(x->at(4, 2), 15);  // in order: the answers halve y
  // One line per sample; the answers number iterations within each request from 1.
  EXPECT_EQ(ReadText("diag.csv"),
            "row,iterations,converged,error_bound,forward_residual\n"
            "1,1,true,1e-06,1e-05\n"
            "2,2,false,2e-06,1e-05\n"
            "3,1,true,1e-06,1e-05\n"
            "4,2,false,2e-06,1e-05\n"
            "5,1,true,1e-06,1e-05\n");
  EXPECT_THAT(err_.str(), HasSubstr("3/5 (60.0%)"));
  EXPECT_THAT(err_.str(), HasSubstr("diagnostics"));
}

TEST_F(CliTest, InputsOverTheServersMaxBatchAreSplit) {
  WriteText("y.csv", "2,4,6\n8,10,12\n14,16,18\n20,22,24\n26,28,30\n");
  constexpr int64_t kMaxBatch = 2;
  std::vector<int64_t> forward_rows;
  EXPECT_CALL(*connection_, Forward(_))
      .Times(4)
      .WillRepeatedly(
          [&forward_rows](const v1::ForwardRequest& r) -> absl::StatusOr<v1::ForwardResponse> {
            forward_rows.push_back(Rows(r.signals()));
            INVNET_RETURN_IF_ERROR(OverMaxBatch(r.signals(), kMaxBatch));
            v1::ForwardResponse response;
            *response.mutable_outputs() = Scaled(r.signals(), 2);
            return response;
          });
  EXPECT_CALL(*connection_, Estimate(_))
      .Times(4)
      .WillRepeatedly([](const v1::EstimateRequest& r) -> absl::StatusOr<v1::EstimateResponse> {
        INVNET_RETURN_IF_ERROR(OverMaxBatch(r.measurements(), kMaxBatch));
        return ScriptedEstimate(r);
      });
  ASSERT_EQ(Run({"forward", "--model=blur", "--input=" + Path("y.csv")}), 0) << err_.str();
  // One refused request of 5 rows, then 2 + 2 + 1.
  EXPECT_THAT(forward_rows, ElementsAre(5, 2, 2, 1));
  EXPECT_EQ(out_.str(), "4,8,12\n16,20,24\n28,32,36\n40,44,48\n52,56,60\n");
  ASSERT_EQ(
      Run({"estimate", "--model=blur", "--input=" + Path("y.csv"), "--estimators=map,wiener"}), 0)
      << err_.str();
  EXPECT_THAT(out_.str(), HasSubstr("# map\n2,4,6\n8,10,12\n14,16,18\n20,22,24\n26,28,30\n"));
}

TEST(BenchOptionsTest, RequestsAloneRunUntilThatManyAreDone) {
  Invocation inv = Parse({"bench", "--model=blur", "--requests=60000"});
  absl::StatusOr<LoadOptions> options = BuildLoadOptions(inv);
  ASSERT_THAT(options, IsOk());
  EXPECT_EQ(options->requests, 60000);
  EXPECT_EQ(options->duration, absl::InfiniteDuration());
  inv = Parse({"bench", "--model=blur", "--requests=60000", "--duration=5"});
  options = BuildLoadOptions(inv);
  ASSERT_THAT(options, IsOk());
  EXPECT_EQ(options->duration, absl::Seconds(5));
  options = BuildLoadOptions(Parse({"bench", "--model=blur"}));
  ASSERT_THAT(options, IsOk());
  EXPECT_EQ(options->duration, absl::Seconds(10));
}

// `invnet bench` sends from the load generator over the gRPC channel itself, so it runs against
// the fake server.
TEST(CliOverWireTest, BenchReportsThroughputAndLatency) {
  FakeServer fake;
  {
    absl::MutexLock lock(&fake.state().mu);
    fake.state().models.push_back(MakeModel("blur", 2, 3, 3));
  }
  std::ostringstream out;
  std::ostringstream err;
  auto run = [&](const std::vector<std::string>& words) {
    out.str("");
    err.str("");
    Context ctx;
    ctx.out = &out;
    ctx.err = &err;
    ctx.connect = [&fake](const std::string&, const ClientOptions& options)
        -> absl::StatusOr<std::unique_ptr<InvnetClient>> {
      return std::make_unique<InvnetClient>(fake.InProcessChannel(), options);
    };
    return Main(Parse(words), ctx);
  };
  ASSERT_EQ(
      run({"bench", "--model=blur", "--requests=40", "--concurrency=4", "--batch=8", "--warmup=0"}),
      0)
      << err.str();
  EXPECT_THAT(out.str(), HasSubstr("reconstruct model=blur batch=8 concurrency=4 closed-loop"));
  EXPECT_THAT(out.str(), HasSubstr("40 ok, 0 errors"));
  EXPECT_THAT(out.str(), HasSubstr("samples/s"));
  EXPECT_THAT(out.str(), HasSubstr("p99.9"));
  {
    absl::MutexLock lock(&fake.state().mu);
    // The requests carried [batch, m] measurements for the model's m.
    EXPECT_EQ(fake.state().reconstruct.measurements().shape(0), 8);
    EXPECT_EQ(fake.state().reconstruct.measurements().shape(1), 3);
  }
  // A fixed arrival rate, and the Forward RPC.
  ASSERT_EQ(
      run({"bench", "--model=blur", "--rpc=forward", "--rate=200", "--duration=0.2", "--warmup=0"}),
      0)
      << err.str();
  EXPECT_THAT(out.str(), HasSubstr("rate=200/s"));
  EXPECT_EQ(run({"bench", "--model=blur", "--rpc=estimate"}), 2);
  EXPECT_EQ(run({"bench", "--model=blur", "--concurrency=0"}), 2);
  EXPECT_EQ(run({"bench"}), 2);
  EXPECT_EQ(run({"bench", "--model=nope", "--requests=1"}), 1);
}

v1::EstimatorScore Score(double mse) {
  v1::EstimatorScore score = NotApplicableScore();
  score.set_mse(mse);
  score.set_mse_ratio_to_pm(mse / 0.1);
  return score;
}

TEST_F(CliTest, EvaluatePrintsTheServersScores) {
  EXPECT_CALL(*connection_, Evaluate(_))
      .WillOnce([](const v1::EvaluateRequest& request) -> absl::StatusOr<v1::EvaluateResponse> {
        EXPECT_EQ(request.models_size(), 2);
        EXPECT_EQ(request.models(0).model(), "blur-divergence");
        EXPECT_EQ(request.models(1).model(), "blur-approximation");
        EXPECT_EQ(request.count(), 100);
        EXPECT_EQ(request.seed(), 3u);
        EXPECT_TRUE(request.posterior_std());
        EXPECT_DOUBLE_EQ(request.solver().tolerance(), 1e-4);
        v1::EvaluateResponse response;
        response.set_count(100);
        response.set_seed(3);
        *response.add_references() = Score(0.1);
        response.mutable_references(0)->set_estimator("posterior_mean");
        *response.add_models() = Score(0.1125);
        response.mutable_models(0)->set_model("blur-divergence");
        response.mutable_models(0)->set_version(2);
        response.mutable_models(0)->set_std_ratio_median(1.02);
        response.mutable_models(0)->set_std_ratio_q10(0.9);
        response.mutable_models(0)->set_std_ratio_q90(1.2);
        *response.add_models() = Score(0.25);
        response.mutable_models(1)->set_model("blur-approximation");
        response.mutable_models(1)->set_version(1);
        response.mutable_models(1)->set_posterior_std_unavailable("no theory for this loss");
        return response;
      });
  ASSERT_EQ(Run({"evaluate", "--model=blur-divergence, blur-approximation", "--count=100",
                 "--seed=3", "--tolerance=1e-4"}),
            0)
      << err_.str();
  EXPECT_THAT(out_.str(), StartsWith("100 held-out pairs (seed 3)"));
  EXPECT_THAT(out_.str(), HasSubstr("| exact posterior mean "));
  EXPECT_THAT(out_.str(), HasSubstr("| blur-divergence v2    | 0.1125 | 1.125 |"));
  EXPECT_THAT(out_.str(), HasSubstr(" 1.020 [0.900, 1.200] |"));
  EXPECT_THAT(out_.str(), HasSubstr("| blur-approximation v1 | 0.2500 | 2.500 |"));
  EXPECT_THAT(err_.str(),
              HasSubstr("blur-approximation: no posterior std: no theory for this loss"));
}

// Without --model or --count nothing is asked (the StrictMock fails any call).
TEST_F(CliTest, EvaluateUsageErrorsCallNothing) {
  EXPECT_EQ(Run({"evaluate", "--count=10"}), 2);
  EXPECT_THAT(err_.str(), HasSubstr("--model"));
  EXPECT_EQ(Run({"evaluate", "--model=a"}), 2);
  EXPECT_THAT(err_.str(), HasSubstr("--count"));
  EXPECT_EQ(Run({"evaluate", "--model=a", "--count=0"}), 2);
}

TEST_F(CliTest, EvaluateErrorsExitOneWithTheServersMessage) {
  EXPECT_CALL(*connection_, Evaluate(_))
      .WillOnce(Return(absl::InvalidArgumentError(
          "models[1]: 'b' version 1 was trained on another problem than models[0] ('a')")));
  EXPECT_EQ(Run({"evaluate", "--model=a,b", "--count=10"}), 1);
  EXPECT_THAT(err_.str(), HasSubstr("INVALID_ARGUMENT: models[1]: 'b' version 1"));
}

}  // namespace
}  // namespace invnet::client::cli
