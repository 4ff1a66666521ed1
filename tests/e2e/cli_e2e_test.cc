// End to end: the real invnet-server binary (port 0, a temporary repository) driven only by the
// real invnet CLI, as a user would.

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/certificates.h"
#include "tests/testing/scratch_directory.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/subprocess.h"
#include "tests/testing/xml.h"

namespace invnet {
namespace {

namespace fs = std::filesystem;
using ::invnet::testing::CommandResult;
using ::invnet::testing::RunCommand;
using ::invnet::testing::ServerProcess;
using ::testing::HasSubstr;

using Matrix = std::vector<std::vector<double>>;

void WriteCsv(const std::string& path, const Matrix& rows) {
  std::ofstream out(path);
  for (const auto& row : rows) {
    for (size_t j = 0; j < row.size(); ++j) out << (j ? "," : "") << row[j];
    out << "\n";
  }
}

Matrix ReadCsv(const std::string& path) {
  std::ifstream in(path);
  Matrix rows;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::vector<double> row;
    for (absl::string_view cell : absl::StrSplit(line, ',')) {
      double v;
      if (!absl::SimpleAtod(cell, &v)) return {};  // a header line: not expected here
      row.push_back(v);
    }
    rows.push_back(row);
  }
  return rows;
}

double RmsDistance(const Matrix& a, const Matrix& b) {
  double sum = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    for (size_t j = 0; j < a[i].size(); ++j) sum += std::pow(a[i][j] - b[i][j], 2);
  }
  return std::sqrt(sum / a.size());
}

// x from the bimodal2d prior and y = A x + 0.2 eta, seeded.
std::pair<Matrix, Matrix> BimodalPairs(int count, unsigned seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<double> normal;
  Matrix x, y;
  for (int i = 0; i < count; ++i) {
    double mode = i % 2 ? 1.0 : -1.0;
    double x0 = mode + 0.3 * normal(gen), x1 = 0.3 * normal(gen);
    x.push_back({x0, x1});
    y.push_back({0.9 * x0 + 0.2 * x1 + 0.2 * normal(gen), 0.1 * x0 + 0.5 * x1 + 0.2 * normal(gen)});
  }
  return {x, y};
}

class CliE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    StartServer();
  }
  void TearDown() override {
    server_.reset();
  }

  void StartServer() {
    auto server = ServerProcess::Start(INVNET_SERVER_BINARY,
                                       {"--repository=" + Path("repo"), "--torch_threads=1"},
                                       Path("server.log"));
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    // Ready means the health service says SERVING (polled by the CLI with its own deadline).
    CommandResult health = Cli({"health"});
    ASSERT_EQ(health.exit_code, 0) << health.err;
  }

  std::string Path(const std::string& name) const { return dir_ + "/" + name; }

  CommandResult Cli(std::vector<std::string> args) {
    std::vector<std::string> argv = {INVNET_CLI_BINARY, "--server=" + server_->target()};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunCommand(argv).value();
  }

  // A small bimodal2d model (fast to train) under `name`.
  std::string WriteSpec(const std::string& name, const std::string& loss, int steps) {
    const std::string path = Path(name + ".spec");
    std::ofstream(path) << "model_name: \"" << name << "\" preset: \"bimodal2d\"\n"
                        << "architecture { num_blocks: 2 hidden_width: 16 }\n"
                        << "training { loss: " << loss << " steps: " << steps
                        << " batch_size: 128 validation_every: 100 validation_size: 200 }\n";
    return path;
  }

  invnet::testing::ScratchDirectory scratch_{"cli_e2e_test"};
  const std::string dir_ = scratch_.path();
  std::unique_ptr<ServerProcess> server_;
};

TEST_F(CliE2eTest, TrainReconstructCompareWithTheReferencesAndDelete) {
  CommandResult train = Cli({"train", "--spec=" + WriteSpec("toy", "LOSS_DIVERGENCE", 400)});
  ASSERT_EQ(train.exit_code, 0) << train.out << train.err;
  EXPECT_FALSE(train.err.empty());  // progress lines on a non-terminal stderr

  CommandResult jobs = Cli({"jobs", "list"});
  ASSERT_EQ(jobs.exit_code, 0) << jobs.err;
  EXPECT_THAT(absl::AsciiStrToLower(jobs.out), HasSubstr("succeeded"));
  CommandResult show = Cli({"models", "show", "toy"});
  ASSERT_EQ(show.exit_code, 0) << show.err;
  EXPECT_THAT(show.out, HasSubstr("toy"));

  auto [x, y] = BimodalPairs(200, 7);
  WriteCsv(Path("x.csv"), x);
  WriteCsv(Path("y.csv"), y);
  CommandResult reconstruct = Cli(
      {"reconstruct", "--model=toy", "--input=" + Path("y.csv"), "--output=" + Path("xhat.csv")});
  ASSERT_EQ(reconstruct.exit_code, 0) << reconstruct.err;
  CommandResult estimate =
      Cli({"estimate", "--model=toy", "--input=" + Path("y.csv"), "--output=" + Path("ref.csv"),
           "--estimators=posterior_mean,pseudo_inverse"});
  ASSERT_EQ(estimate.exit_code, 0) << estimate.err;
  Matrix x_hat = ReadCsv(Path("xhat.csv"));
  Matrix pm = ReadCsv(Path("ref.posterior_mean.csv"));
  Matrix pinv = ReadCsv(Path("ref.pseudo_inverse.csv"));
  ASSERT_EQ(x_hat.size(), 200u);
  ASSERT_EQ(pm.size(), 200u);
  ASSERT_EQ(pinv.size(), 200u);
  // The MAP-like network is far closer to the posterior mean than the unregularised inverse
  // A^-1 y, and its error is near the Bayes risk.
  const double network_to_pm = RmsDistance(x_hat, pm);
  const double inverse_to_pm = RmsDistance(pinv, pm);
  EXPECT_LT(network_to_pm, 0.5 * inverse_to_pm) << network_to_pm << " vs " << inverse_to_pm;
  EXPECT_LT(std::pow(RmsDistance(x_hat, x), 2), 1.3 * std::pow(RmsDistance(pm, x), 2));

  // The network's own posterior std (Laplace, divergence in normal space) against the exact
  // one: a 400-step network of width 16 is a rough curvature model, but of the right size.
  CommandResult spread = Cli({"reconstruct", "--model=toy", "--input=" + Path("y.csv"),
                              "--output=" + Path("xhat2.csv"),
                              "--posterior_std=" + Path("std.csv")});
  ASSERT_EQ(spread.exit_code, 0) << spread.err;
  EXPECT_THAT(spread.err, HasSubstr("posterior std (laplace-divergence"));
  CommandResult exact_std =
      Cli({"estimate", "--model=toy", "--input=" + Path("y.csv"), "--output=" + Path("es.csv"),
           "--estimators=posterior_std"});
  ASSERT_EQ(exact_std.exit_code, 0) << exact_std.err;
  Matrix std = ReadCsv(Path("std.csv"));
  Matrix reference = ReadCsv(Path("es.csv"));
  ASSERT_EQ(std.size(), 200u);
  ASSERT_EQ(reference.size(), 200u);
  std::vector<double> ratios;
  for (size_t i = 0; i < std.size(); ++i) {
    for (size_t j = 0; j < 2; ++j) {
      if (std::isfinite(std[i][j])) ratios.push_back(std[i][j] / reference[i][j]);
    }
  }
  ASSERT_GE(ratios.size(), 380u);  // at most 10 samples without a defined std
  std::sort(ratios.begin(), ratios.end());
  EXPECT_GT(ratios[ratios.size() / 2], 0.7);
  EXPECT_LT(ratios[ratios.size() / 2], 1.4);
  // A loss without a theory for it: the server's reason reaches the user.
  ASSERT_EQ(Cli({"train", "--spec=" + WriteSpec("plain", "LOSS_APPROXIMATION", 5)}).exit_code, 0);
  CommandResult refused = Cli({"reconstruct", "--model=plain", "--input=" + Path("y.csv"),
                               "--posterior_std=" + Path("none.csv")});
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_THAT(refused.err, HasSubstr("FAILED_PRECONDITION"));
  EXPECT_THAT(refused.err, HasSubstr("loss 'approximation'"));

  CommandResult forward =
      Cli({"forward", "--model=toy", "--input=" + Path("x.csv"), "--output=" + Path("phi.npy")});
  ASSERT_EQ(forward.exit_code, 0) << forward.err;
  EXPECT_TRUE(fs::exists(Path("phi.npy")));

  // Bad input: the RPC's code and the field reach the user; the server keeps serving.
  WriteCsv(Path("bad.csv"), {{1, 2, 3}});
  CommandResult bad = Cli({"reconstruct", "--model=toy", "--input=" + Path("bad.csv")});
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_THAT(bad.err, HasSubstr("INVALID_ARGUMENT"));
  EXPECT_THAT(bad.err, HasSubstr("measurements"));
  CommandResult missing = Cli({"reconstruct", "--model=nope", "--input=" + Path("y.csv")});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_THAT(missing.err, HasSubstr("NOT_FOUND"));
  EXPECT_EQ(Cli({"reconstruct", "--bogus_flag=1"}).exit_code, 2);
  EXPECT_EQ(Cli({"health"}).exit_code, 0);

  ASSERT_EQ(Cli({"models", "delete", "toy", "--all_versions"}).exit_code, 0);
  CommandResult gone = Cli({"models", "show", "toy"});
  EXPECT_EQ(gone.exit_code, 1);
  EXPECT_THAT(gone.err, HasSubstr("NOT_FOUND"));

  // SIGTERM: a clean exit.
  EXPECT_EQ(server_->Terminate(), 0);
}

TEST_F(CliE2eTest, KilledDuringTrainingLosesNothingAndPublishesNothingHalfDone) {
  ASSERT_EQ(Cli({"train", "--spec=" + WriteSpec("keep", "LOSS_APPROXIMATION", 100)}).exit_code, 0);
  auto [x, y] = BimodalPairs(50, 3);
  WriteCsv(Path("y.csv"), y);
  ASSERT_EQ(Cli({"reconstruct", "--model=keep", "--input=" + Path("y.csv"),
                 "--output=" + Path("before.csv")})
                .exit_code,
            0);

  CommandResult started =
      Cli({"train", "--detach", "--spec=" + WriteSpec("long", "LOSS_LOG_DET", 1000000)});
  ASSERT_EQ(started.exit_code, 0) << started.err;
  const std::string job_id = std::string(absl::StripAsciiWhitespace(started.out));
  ASSERT_FALSE(job_id.empty());
  // Wait (with a deadline) until the job is really training.
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  bool running = false;
  while (!running && absl::Now() < deadline) {
    CommandResult show = Cli({"jobs", "show", job_id});
    running = absl::StrContains(absl::AsciiStrToLower(show.out), "running") &&
              !absl::StrContains(show.out, "progress  0/");
  }
  ASSERT_TRUE(running);

  server_->Kill();  // a crash, mid-training
  StartServer();

  CommandResult job = Cli({"jobs", "show", job_id});
  ASSERT_EQ(job.exit_code, 0) << job.err;
  EXPECT_THAT(absl::AsciiStrToLower(job.out), HasSubstr("failed"));
  EXPECT_THAT(job.out, HasSubstr("server restarted"));
  CommandResult models = Cli({"models", "list"});
  ASSERT_EQ(models.exit_code, 0);
  EXPECT_THAT(models.out, HasSubstr("keep"));
  EXPECT_THAT(models.out, ::testing::Not(HasSubstr("long")));
  // The earlier model answers exactly as before.
  ASSERT_EQ(Cli({"reconstruct", "--model=keep", "--input=" + Path("y.csv"),
                 "--output=" + Path("after.csv")})
                .exit_code,
            0);
  EXPECT_EQ(ReadCsv(Path("after.csv")), ReadCsv(Path("before.csv")));
  EXPECT_TRUE(fs::is_empty(Path("repo/tmp")));
}

// A user's y file from `invnet pairs`, reconstructed in chunks the server's --max_batch allows,
// with per-sample diagnostics; the job as `jobs show` describes it (the resolved loss weight).
TEST_F(CliE2eTest, PairsThenReconstructInChunksWithDiagnostics) {
  server_.reset();
  auto server = ServerProcess::Start(
      INVNET_SERVER_BINARY, {"--repository=" + Path("repo"), "--torch_threads=1", "--max_batch=4"},
      Path("server.log"));
  ASSERT_TRUE(server.ok()) << server.status();
  server_ = *std::move(server);
  ASSERT_EQ(Cli({"health"}).exit_code, 0);
  CommandResult train = Cli({"train", "--spec=" + WriteSpec("small", "LOSS_LOG_DET", 100)});
  ASSERT_EQ(train.exit_code, 0) << train.err;
  // "job J started: training model small"
  const size_t at = train.err.find("job ");
  ASSERT_NE(at, std::string::npos) << train.err;
  const std::string job_id = train.err.substr(at + 4, train.err.find(' ', at + 4) - at - 4);
  CommandResult show = Cli({"jobs", "show", job_id});
  ASSERT_EQ(show.exit_code, 0) << show.err;
  // bimodal2d's noise level is 0.2: the default weight is delta^2 = 0.04, and the job says so.
  EXPECT_THAT(show.out, HasSubstr("loss log-det (weight 0.04)"));
  EXPECT_THAT(show.out, ::testing::Not(HasSubstr("weight -1")));

  CommandResult pairs =
      Cli({"pairs", "--model=small", "--count=10", "--seed=3", "--output=" + Path("p.csv")});
  ASSERT_EQ(pairs.exit_code, 0) << pairs.err;
  EXPECT_THAT(pairs.err, HasSubstr(Path("p.x.csv")));
  ASSERT_EQ(ReadCsv(Path("p.x.csv")).size(), 10u);
  ASSERT_EQ(ReadCsv(Path("p.y.csv")).size(), 10u);

  // 10 rows against --max_batch=4: refused once, then 4 + 4 + 2; the same as one by one.
  CommandResult chunked = Cli({"reconstruct", "--model=small", "--input=" + Path("p.y.csv"),
                               "--output=" + Path("x.csv"), "--diagnostics=" + Path("diag.csv")});
  ASSERT_EQ(chunked.exit_code, 0) << chunked.err;
  CommandResult single = Cli({"reconstruct", "--model=small", "--input=" + Path("p.y.csv"),
                              "--output=" + Path("x1.csv"), "--chunk_rows=1"});
  ASSERT_EQ(single.exit_code, 0) << single.err;
  const Matrix x = ReadCsv(Path("x.csv"));
  ASSERT_EQ(x.size(), 10u);
  EXPECT_LT(RmsDistance(x, ReadCsv(Path("x1.csv"))), 1e-4);
  std::ifstream diag(Path("diag.csv"));
  std::string line;
  std::getline(diag, line);
  EXPECT_EQ(line, "row,iterations,converged,error_bound,forward_residual");
  int rows = 0;
  while (std::getline(diag, line)) {
    ++rows;
    EXPECT_TRUE(absl::StartsWith(line, absl::StrCat(rows, ","))) << line;
  }
  EXPECT_EQ(rows, 10);
}

// `invnet experiment` on a tiny bimodal2d schedule: two losses trained concurrently, evaluated
// on the same pairs, and a report folder with a table, a CSV and figures that parse.
TEST_F(CliE2eTest, ExperimentWritesAReportWithTablesAndFigures) {
  const std::string spec = Path("tiny.spec");
  std::ofstream(spec) << "preset: \"bimodal2d\"\n"
                      << "architecture { num_blocks: 2 hidden_width: 16 }\n"
                      << "training { steps: 100 batch_size: 128 validation_every: 50 "
                      << "validation_size: 200 }\n";
  const std::string report = Path("report");
  CommandResult run = Cli({"experiment", "--spec=" + spec, "--losses=approximation,divergence",
                           "--test_pairs=500", "--output_dir=" + report});
  ASSERT_EQ(run.exit_code, 0) << run.out << run.err;
  EXPECT_THAT(run.out, HasSubstr("report: " + report + "/report.md"));
  EXPECT_THAT(run.err, HasSubstr("experiment-divergence: succeeded"));

  std::ifstream md_file(report + "/report.md");
  std::stringstream md;
  md << md_file.rdbuf();
  EXPECT_THAT(md.str(), HasSubstr("| exact posterior mean "));
  EXPECT_THAT(md.str(), HasSubstr("| divergence regularised "));
  for (const char* figure : {"grids.svg", "samples.svg", "curves.svg"}) {
    SCOPED_TRACE(figure);
    EXPECT_THAT(md.str(), HasSubstr(absl::StrCat("](", figure, ")")));
    std::ifstream in(report + "/" + figure);
    std::stringstream svg;
    svg << in.rdbuf();
    absl::StatusOr<testing::XmlElement> root = testing::ParseXml(svg.str());
    ASSERT_TRUE(root.ok()) << root.status();
    EXPECT_EQ(root->name, "svg");
  }

  // results.csv: the four references and the two networks, with sane numbers.
  std::ifstream csv(report + "/results.csv");
  std::string line;
  std::getline(csv, line);
  EXPECT_TRUE(absl::StartsWith(line, "estimator,key,kind,model,version,target_space,mse,"));
  std::map<std::string, std::vector<std::string>> rows;
  while (std::getline(csv, line)) {
    std::vector<std::string> cells = absl::StrSplit(line, ',');
    ASSERT_GE(cells.size(), 14u) << line;
    rows[cells[1]] = cells;
  }
  ASSERT_EQ(rows.size(), 6u);
  auto number = [&rows](const std::string& key, int column) {
    double v = NAN;
    EXPECT_TRUE(absl::SimpleAtod(rows[key][column], &v)) << key << " column " << column;
    return v;
  };
  EXPECT_NEAR(number("posterior_mean", 7), 1.0, 1e-9);  // mse_ratio_to_pm
  EXPECT_EQ(rows["divergence"][5], "normal");
  EXPECT_EQ(rows["approximation"][5], "measurement");
  for (const char* key : {"approximation", "divergence"}) {
    EXPECT_GT(number(key, 6), 0);             // mse
    EXPECT_GT(number(key, 7), 0.9);           // no better than the Bayes risk
    EXPECT_GT(number(key, 10), 0);            // forward error
    EXPECT_NEAR(number(key, 11), 1.0, 0.01);  // converged fraction
    EXPECT_GT(number(key, 13), 0);            // train seconds
  }
  // The MAP-like network beats the unregularised one already after 100 steps.
  EXPECT_LT(number("divergence", 6), number("approximation", 6));

  CommandResult models = Cli({"models", "list"});
  EXPECT_THAT(models.out, HasSubstr("experiment-approximation"));
  EXPECT_THAT(models.out, HasSubstr("experiment-divergence"));

  // The same models scored again from the terminal (Evaluate): on the experiment's pairs
  // (seed 0, 500 pairs) the numbers are the report's.
  CommandResult scored = Cli({"evaluate", "--model=experiment-approximation,experiment-divergence",
                              "--count=500"});
  ASSERT_EQ(scored.exit_code, 0) << scored.out << scored.err;
  EXPECT_THAT(scored.out, HasSubstr("| exact posterior mean "));
  EXPECT_THAT(scored.out, HasSubstr(absl::StrFormat("| experiment-divergence v1    | %.4f |",
                                                    number("divergence", 6))));
}

// A deployment: TLS and bearer tokens, with the CLI's --tls, --tls_ca_file and --token_file
// (or $INVNET_TOKEN_FILE).
TEST_F(CliE2eTest, TlsAndTokens) {
  ASSERT_OK_AND_ASSIGN(invnet::testing::TestCertificates certs,
                       invnet::testing::MakeTestCertificates(dir_));
  const std::string tokens = Path("tokens");
  std::ofstream(tokens) << "infer e2e-infer-token-4d3c2b1a\nadmin e2e-admin-token-9f8e7d6c\n";
  std::ofstream(Path("infer.token")) << "e2e-infer-token-4d3c2b1a\n";
  std::ofstream(Path("admin.token")) << "e2e-admin-token-9f8e7d6c\n";
  server_.reset();
  ASSERT_OK_AND_ASSIGN(
      server_,
      ServerProcess::Start(INVNET_SERVER_BINARY,
                           {"--repository=" + Path("repo"), "--torch_threads=1",
                            "--tls_cert_file=" + certs.server_cert,
                            "--tls_key_file=" + certs.server_key, "--auth_tokens_file=" + tokens},
                           Path("server.log")));
  const std::vector<std::string> tls = {"--tls", "--tls_ca_file=" + certs.ca_cert};
  const auto secure_cli = [&](const std::string& token, std::vector<std::string> args) {
    std::vector<std::string> argv = tls;
    if (!token.empty()) argv.push_back("--token_file=" + Path(token));
    argv.insert(argv.end(), args.begin(), args.end());
    return Cli(argv);
  };

  CommandResult health = secure_cli("", {"health"});  // no token needed
  ASSERT_EQ(health.exit_code, 0) << health.err;
  CommandResult train =
      secure_cli("admin.token", {"train", "--spec=" + WriteSpec("toy", "LOSS_DIVERGENCE", 50)});
  ASSERT_EQ(train.exit_code, 0) << train.err;
  CommandResult list = secure_cli("infer.token", {"models", "list"});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  EXPECT_THAT(list.out, HasSubstr("toy"));

  CommandResult denied = secure_cli("infer.token", {"models", "delete", "toy", "--all_versions"});
  EXPECT_EQ(denied.exit_code, 1);
  EXPECT_THAT(denied.err, HasSubstr("PERMISSION_DENIED"));
  EXPECT_THAT(denied.err, HasSubstr("'admin' scope"));
  CommandResult anonymous = secure_cli("", {"models", "list"});
  EXPECT_EQ(anonymous.exit_code, 1);
  EXPECT_THAT(anonymous.err, HasSubstr("UNAUTHENTICATED"));
  CommandResult plaintext = Cli({"--token_file=" + Path("infer.token"), "models", "list"});
  EXPECT_EQ(plaintext.exit_code, 1);
  EXPECT_THAT(plaintext.err, HasSubstr("UNAVAILABLE"));
  CommandResult no_tls = Cli({"--tls_ca_file=" + certs.ca_cert, "models", "list"});
  EXPECT_EQ(no_tls.exit_code, 2);
  EXPECT_THAT(no_tls.err, HasSubstr("--tls_ca_file needs --tls"));

  // The environment variable is the fallback for --token_file (the child inherits it).
  ASSERT_EQ(setenv("INVNET_TOKEN_FILE", Path("admin.token").c_str(), 1), 0);
  CommandResult from_environment = secure_cli("", {"models", "delete", "toy", "--all_versions"});
  unsetenv("INVNET_TOKEN_FILE");
  EXPECT_EQ(from_environment.exit_code, 0) << from_environment.err;
  EXPECT_EQ(server_->Terminate(), 0);
}

TEST(ServerBinaryTest, BadSecurityFilesFailWithTheFlagNamed) {
  const invnet::testing::ScratchDirectory scratch("e2e_flags");
  const std::string dir = scratch.path();
  std::ofstream(dir + "/tokens") << "# tokens\nadmin\n";
  const std::vector<std::string> base = {INVNET_SERVER_BINARY, "--address=127.0.0.1:0",
                                         "--repository=" + dir + "/repo"};
  auto with = [&](const std::vector<std::string>& flags) {
    std::vector<std::string> argv = base;
    argv.insert(argv.end(), flags.begin(), flags.end());
    return RunCommand(argv, absl::Seconds(60)).value();
  };
  CommandResult tokens = with({"--auth_tokens_file=" + dir + "/tokens"});
  EXPECT_EQ(tokens.exit_code, 2);  // a bad flag value: a usage error
  EXPECT_THAT(tokens.err, HasSubstr("auth_tokens_file: " + dir + "/tokens:2:"));
  CommandResult cert =
      with({"--tls_cert_file=" + dir + "/missing.pem", "--tls_key_file=" + dir + "/tokens"});
  EXPECT_EQ(cert.exit_code, 2);
  EXPECT_THAT(cert.err, HasSubstr("tls_cert_file: "));
  EXPECT_THAT(cert.err, HasSubstr("missing.pem"));
}

}  // namespace
}  // namespace invnet
