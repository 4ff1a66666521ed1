// `invnet experiment` against the fake server: the training schedule (concurrent jobs, retry
// on RESOURCE_EXHAUSTED), the evaluation on shared test pairs, and the report's numbers and
// figures checked against what the fake's RPCs returned.

#include "client/experiment.h"

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "client/cli.h"
#include "client/report.h"
#include "client/tensor_io.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proto/base/file_io.h"
#include "absl/synchronization/notification.h"
#include "tests/client/fake_server.h"
#include "tests/client/mock_connection.h"
#include "tests/testing/scratch_directory.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/xml.h"

namespace invnet::client {
namespace {

using ::invnet::client::testing::FakeServer;
using ::invnet::client::testing::FakeState;
using ::invnet::client::testing::MockConnection;
using ::invnet::testing::IsOk;
using ::invnet::testing::ParseXml;
using ::invnet::testing::ScratchDirectory;
using ::invnet::testing::StatusIs;
using ::invnet::testing::XmlElement;
using ::testing::_;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::Return;
using ::testing::UnorderedElementsAreArray;

// The bimodal2d problem written out, as a spec file would.
constexpr char kSpec[] = R"pb(
  problem {
    operator {
      dense {
        matrix {
          shape: [ 2, 2 ]
          values: [ 0.9, 0.2, 0.1, 0.5 ]
        }
      }
    }
    noise_level: 0.2
    prior {
      weights: [ 0.5, 0.5 ]
      means {
        shape: [ 2, 2 ]
        values: [ -1, 0, 1, 0 ]
      }
      covariances {
        shape: [ 2, 2, 2 ]
        values: [ 0.09, 0, 0, 0.09, 0.09, 0, 0, 0.09 ]
      }
    }
  }
  architecture { num_blocks: 2 hidden_width: 16 }
  training { steps: 100 batch_size: 128 }
)pb";

// A 3-D dataset problem: no exact references.
constexpr char kDatasetSpec[] = R"pb(
  problem {
    operator { identity { dim: 3 } }
    noise_level: 0.1
    dataset: "digits"
  }
  training { steps: 50 }
)pb";

const float kScale[] = {1.0f, 0.6f, 0.5f, 0.45f};  // Reconstruct's factor per loss, in order
const char* const kKeys[] = {"approximation", "log-det", "divergence", "reconstruction"};

// results.csv as key -> column -> value.
std::map<std::string, std::map<std::string, std::string>> ReadResults(const std::string& path) {
  std::map<std::string, std::map<std::string, std::string>> rows;
  absl::StatusOr<std::string> text = ReadFileToString(path);
  EXPECT_THAT(text, IsOk());
  if (!text.ok()) return rows;
  std::vector<std::string> lines = absl::StrSplit(*text, '\n', absl::SkipEmpty());
  const std::vector<std::string> header = absl::StrSplit(lines[0], ',');
  for (size_t i = 1; i < lines.size(); ++i) {
    // The estimator label may be quoted (it may hold a comma): split the rest from its end.
    std::string line = lines[i];
    std::string label;
    if (line[0] == '"') {
      const size_t end = line.find('"', 1);
      label = line.substr(1, end - 1);
      line = line.substr(end + 1);
    } else {
      label = line.substr(0, line.find(','));
      line = line.substr(label.size());
    }
    std::vector<std::string> cells = absl::StrSplit(line, ',');
    cells[0] = label;
    EXPECT_EQ(cells.size(), header.size()) << lines[i];
    std::map<std::string, std::string> row;
    for (size_t c = 0; c < header.size() && c < cells.size(); ++c) row[header[c]] = cells[c];
    rows[row["key"]] = row;
  }
  return rows;
}

double Number(const std::map<std::string, std::string>& row, const std::string& column) {
  double v = NAN;
  auto it = row.find(column);
  if (it == row.end() || !absl::SimpleAtod(it->second, &v)) {
    ADD_FAILURE() << "no number in column " << column;
  }
  return v;
}

std::set<std::string> PanelIds(const XmlElement& root) {
  std::set<std::string> ids;
  for (const XmlElement* e : root.WithAttribute("data-panel")) ids.insert(e->Attr("data-panel"));
  return ids;
}

class ExperimentTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::MutexLock lock(&fake_.state().mu);
    fake_.state().simulate_training = true;
    fake_.state().max_jobs = 2;
    for (int i = 0; i < 4; ++i) {
      fake_.state().reconstruct_scale[absl::StrCat("experiment-", kKeys[i])] = kScale[i];
    }
  }

  std::string Path(const std::string& name) const { return dir_ + "/" + name; }
  std::string WriteSpec(const std::string& name, const std::string& text) const {
    std::ofstream(Path(name)) << text;
    return Path(name);
  }

  // `invnet experiment <flags>` against the fake; returns the exit code.
  int Run(const std::vector<std::pair<std::string, std::string>>& flags, bool interactive = false) {
    cli::Invocation inv;
    inv.args = {"experiment"};
    for (const auto& [name, value] : flags) {
      inv.specified.insert(name);
      cli::CliFlags& f = inv.flags;
      if (name == "spec") f.spec = value;
      if (name == "preset") f.preset = value;
      if (name == "losses") f.losses = value;
      if (name == "name") f.name = value;
      if (name == "output_dir") f.output_dir = value;
      if (name == "test_pairs") f.test_pairs = std::stoll(value);
      if (name == "seed") f.seed = std::stoull(value);
      if (name == "steps") f.steps = std::stoll(value);
      if (name == "seeds") f.seeds = std::stoll(value);
    }
    out_.str("");
    err_.str("");
    cli::Context ctx;
    ctx.out = &out_;
    ctx.err = &err_;
    ctx.interactive = interactive;
    ctx.connect =
        [this](const std::string&,
               const ClientOptions& options) -> absl::StatusOr<std::unique_ptr<InvnetClient>> {
      return std::make_unique<InvnetClient>(fake_.InProcessChannel(), options);
    };
    return cli::Main(inv, ctx);
  }

  std::string ReadText(const std::string& path) {
    absl::StatusOr<std::string> text = ReadFileToString(path);
    EXPECT_THAT(text, IsOk());
    return text.ok() ? *text : "";
  }

  FakeServer fake_;
  ScratchDirectory scratch_{"experiment_test"};
  const std::string dir_ = scratch_.path();
  std::ostringstream out_;
  std::ostringstream err_;
};

TEST_F(ExperimentTest, ReportMatchesWhatTheServerAnswered) {
  const std::string report_dir = Path("report");
  ASSERT_EQ(Run({{"spec", WriteSpec("toy.spec", kSpec)},
                 {"test_pairs", "40"},
                 {"seed", "7"},
                 {"output_dir", report_dir}}),
            0)
      << err_.str();

  // Four jobs, at most two at a time: the others were refused and submitted again.
  {
    absl::MutexLock lock(&fake_.state().mu);
    const FakeState& s = fake_.state();
    ASSERT_EQ(s.train_requests.size(), 4u);
    std::vector<std::string> names;
    for (const v1::TrainRequest& r : s.train_requests) {
      names.push_back(r.model_name());
      EXPECT_EQ(r.training().steps(), 100);
      EXPECT_EQ(r.architecture().num_blocks(), 2);
      EXPECT_TRUE(r.problem().has_prior());
      EXPECT_EQ(r.model_name(), absl::StrCat("experiment-", InfoFor(r.training().loss()).key));
    }
    EXPECT_THAT(names, ElementsAre("experiment-approximation", "experiment-log-det",
                                   "experiment-divergence", "experiment-reconstruction"));
    EXPECT_GE(s.train_refusals, 1);
    EXPECT_EQ(s.most_running, 2);
    // The test pairs come from the first model, with the seed asked for.
    EXPECT_EQ(s.draw.model(), "experiment-approximation");
    EXPECT_EQ(s.draw.count(), 40);
    EXPECT_EQ(s.draw.seed(), 7u);
  }

  // One Evaluate scored every model, in the experiment's order, on the same pairs.
  {
    absl::MutexLock lock(&fake_.state().mu);
    const v1::EvaluateRequest& evaluate = fake_.state().evaluate;
    ASSERT_EQ(evaluate.models_size(), 4);
    for (int i = 0; i < 4; ++i) {
      EXPECT_EQ(evaluate.models(i).model(), absl::StrCat("experiment-", kKeys[i]));
      EXPECT_EQ(evaluate.models(i).version(), 1);
    }
    EXPECT_EQ(evaluate.count(), 40);
    EXPECT_EQ(evaluate.seed(), 7u);
    EXPECT_TRUE(evaluate.posterior_std());
  }

  auto results = ReadResults(report_dir + "/results.csv");
  ASSERT_EQ(results.size(), 8u);
  const std::string md = ReadText(report_dir + "/report.md");
  auto row_of = [&md](const std::string& label) {
    for (absl::string_view line : absl::StrSplit(md, '\n')) {
      if (absl::StartsWith(line, absl::StrCat("| ", label, " "))) return std::string(line);
    }
    ADD_FAILURE() << "no table row for " << label;
    return std::string();
  };
  auto expect_near = [](double actual, double expected) {
    EXPECT_NEAR(actual, expected, 1e-9 * std::max(1.0, std::abs(expected)));
  };

  // The server's numbers (the fake's canned scores, fake_server.h), shown as they came.
  const char* kReferences[][2] = {{"posterior_mean", "exact posterior mean"},
                                  {"map", "exact MAP"},
                                  {"wiener", "Wiener (Tikhonov)"},
                                  {"pseudo_inverse", "A⁺y (pseudo-inverse)"}};
  for (int r = 0; r < 4; ++r) {
    const char* key = kReferences[r][0];
    SCOPED_TRACE(key);
    expect_near(Number(results[key], "mse"), 0.5 + 0.1 * r);
    expect_near(Number(results[key], "mse_ratio_to_pm"), 1 + 0.2 * r);
    expect_near(Number(results[key], "rms_to_pm"), 0.05 * r);
    expect_near(Number(results[key], "rms_to_map"), 0.3 - 0.05 * r);
    EXPECT_EQ(results[key]["kind"], "reference");
    EXPECT_EQ(results[key]["forward_error"], "");
    EXPECT_THAT(row_of(kReferences[r][1]), HasSubstr(absl::StrFormat(" %.4f |", 0.5 + 0.1 * r)));
  }

  std::map<std::string, double> train_seconds;
  {
    absl::MutexLock lock(&fake_.state().mu);
    for (const v1::Model& m : fake_.state().models) {
      train_seconds[m.name()] = m.versions(0).metrics().at("train_seconds");
    }
  }
  for (int i = 0; i < 4; ++i) {
    SCOPED_TRACE(kKeys[i]);
    const auto& row = results[kKeys[i]];
    const bool normal = std::string(kKeys[i]) == "divergence";
    expect_near(Number(row, "mse"), 1.0 + i);
    expect_near(Number(row, "mse_ratio_to_pm"), 2.0 + i);
    expect_near(Number(row, "rms_to_pm"), 0.25 + i);
    expect_near(Number(row, "rms_to_map"), 0.75 + i);
    expect_near(Number(row, "forward_error"), 0.01 * (i + 1));
    expect_near(Number(row, "converged_fraction"), 0.975);
    expect_near(Number(row, "mean_iterations"), 20.5);
    const std::string model = absl::StrCat("experiment-", kKeys[i]);
    expect_near(Number(row, "train_seconds"), train_seconds.at(model));
    EXPECT_EQ(row.at("model"), model);
    EXPECT_EQ(row.at("version"), "1");
    EXPECT_EQ(row.at("target_space"), normal ? "normal" : "measurement");
    const std::string line = row_of(InfoFor(ParseLossList(kKeys[i])->front()).label);
    EXPECT_THAT(line, HasSubstr(absl::StrFormat(" %.4f |", 1.0 + i)));
    EXPECT_THAT(line, HasSubstr(absl::StrFormat(" %.3f |", 2.0 + i)));
    EXPECT_THAT(line, HasSubstr(" 97.5% |"));
    EXPECT_THAT(line, HasSubstr(" 20.5 |"));
    // The network's own std where the loss defines one, nothing where the server has none.
    const bool has_std = std::string(kKeys[i]) == "divergence" || std::string(kKeys[i]) == "log-det";
    if (has_std) {
      EXPECT_EQ(row.at("posterior_std_method"), "laplace-divergence");
      expect_near(Number(row, "mean_posterior_std"), 0.5 + i);
      expect_near(Number(row, "std_ratio_mean"), 0.6 + i);
      expect_near(Number(row, "std_ratio_median"), 2.1);
      expect_near(Number(row, "std_ratio_q10"), 0.57);
      expect_near(Number(row, "std_ratio_q90"), 3.63);
      expect_near(Number(row, "std_undefined_fraction"), 0.025);
      EXPECT_THAT(line, HasSubstr(" 2.100 [0.570, 3.630], 2.5% NaN |"));
    } else {
      EXPECT_EQ(row.at("posterior_std_method"), "");
      EXPECT_EQ(row.at("std_ratio_median"), "");
    }
  }
  expect_near(Number(results["posterior_mean"], "mean_posterior_std"), 1.0);
  EXPECT_THAT(md, HasSubstr("**std / exact std**"));

  // The command printed the same table and where the report is.
  EXPECT_THAT(out_.str(), HasSubstr(row_of("exact posterior mean")));
  EXPECT_THAT(out_.str(), HasSubstr("report: " + report_dir + "/report.md\n"));
  // report.md links every figure it has, and the figures parse.
  for (const char* figure : {"grids.svg", "samples.svg", "curves.svg"}) {
    EXPECT_THAT(md, HasSubstr(absl::StrCat("](", figure, ")"))) << figure;
    EXPECT_THAT(ParseXml(ReadText(report_dir + "/" + figure)), IsOk()) << figure;
  }
  EXPECT_THAT(md, Not(HasSubstr("signals.svg")));
  EXPECT_THAT(md, HasSubstr("](results.csv)"));
  EXPECT_THAT(md, Not(HasSubstr("No exact references")));
}

TEST_F(ExperimentTest, FiguresHaveAPanelPerLossAndEveryPlottedSample) {
  const std::string report_dir = Path("figures");
  ASSERT_EQ(Run({{"spec", WriteSpec("toy.spec", kSpec)},
                 {"test_pairs", "60"},
                 {"output_dir", report_dir}}),
            0)
      << err_.str();

  absl::StatusOr<XmlElement> grids = ParseXml(ReadText(report_dir + "/grids.svg"));
  ASSERT_THAT(grids, IsOk());
  std::vector<std::string> expected = {"forward-grid", "forward-exact-a", "forward-exact-ata",
                                       "inverse-grid", "inverse-pm",      "inverse-map",
                                       "inverse-pinv"};
  for (const char* key : kKeys) {
    expected.push_back(absl::StrCat("forward-", key));
    expected.push_back(absl::StrCat("inverse-", key));
  }
  EXPECT_THAT(PanelIds(*grids), UnorderedElementsAreArray(expected));
  for (const XmlElement* panel : grids->WithAttribute("data-panel")) {
    // 15 + 15 grid lines, each one polyline.
    EXPECT_EQ(panel->Count("polyline"), 30) << panel->Attr("data-panel");
  }

  absl::StatusOr<XmlElement> samples = ParseXml(ReadText(report_dir + "/samples.svg"));
  ASSERT_THAT(samples, IsOk());
  expected = {"samples-x", "samples-y", "samples-pm", "samples-map"};
  for (const char* key : kKeys) expected.push_back(absl::StrCat("samples-", key));
  EXPECT_THAT(PanelIds(*samples), UnorderedElementsAreArray(expected));
  for (const XmlElement* panel : samples->WithAttribute("data-panel")) {
    EXPECT_EQ(panel->Count("circle"), 60) << panel->Attr("data-panel");
    EXPECT_EQ(panel->Attr("data-points"), "60");
  }
  EXPECT_EQ(samples->Count("circle"), 60 * 8);  // no circle outside the scatter panels

  absl::StatusOr<XmlElement> curves = ParseXml(ReadText(report_dir + "/curves.svg"));
  ASSERT_THAT(curves, IsOk());
  EXPECT_THAT(PanelIds(*curves),
              UnorderedElementsAreArray({"curve-loss", "curve-val-mse", "curve-val-forward"}));
  for (const XmlElement* panel : curves->WithAttribute("data-panel")) {
    std::set<std::string> series;
    for (const XmlElement* s : panel->WithAttribute("data-series")) {
      series.insert(s->Attr("data-series"));
    }
    for (const char* key : kKeys) EXPECT_EQ(series.count(key), 1u) << panel->Attr("data-panel");
    // The Bayes risk as a reference level in the validation MSE panel only.
    EXPECT_EQ(series.count("posterior-mean"), panel->Attr("data-panel") == "curve-val-mse")
        << panel->Attr("data-panel");
  }
  // Every figure has a title, a legend with each loss, and labelled axes.
  for (const XmlElement* root : {&*grids, &*samples, &*curves}) {
    EXPECT_EQ(root->Count("title"), 1);
    std::multiset<std::string> texts;
    for (const XmlElement* t : root->FindAll("text")) texts.insert(t->text);
    for (const LossInfo& info : ExperimentLosses()) {
      EXPECT_EQ(texts.count(info.label), 1u + (root == &*samples ? 1 : 0)) << info.label;
    }
  }
}

// More pairs than the figures draw: the numbers are over all of them (Evaluate), the figures
// show the first kFigurePairs and say so.
TEST_F(ExperimentTest, FiguresDrawTheFirstPairsOfMore) {
  const std::string report_dir = Path("many");
  ASSERT_EQ(Run({{"spec", WriteSpec("toy.spec", kSpec)},
                 {"losses", "divergence"},
                 {"test_pairs", "600"},
                 {"output_dir", report_dir}}),
            0)
      << err_.str();
  EXPECT_THAT(out_.str(), HasSubstr("toy, 600 held-out pairs"));
  {
    absl::MutexLock lock(&fake_.state().mu);
    EXPECT_EQ(fake_.state().evaluate.count(), 600);
    EXPECT_EQ(fake_.state().draw.count(), 600);
  }
  absl::StatusOr<XmlElement> samples = ParseXml(ReadText(report_dir + "/samples.svg"));
  ASSERT_THAT(samples, IsOk());
  for (const XmlElement* panel : samples->WithAttribute("data-panel")) {
    EXPECT_EQ(panel->Attr("data-points"), "500") << panel->Attr("data-panel");
  }
  const std::string md = ReadText(report_dir + "/report.md");
  EXPECT_THAT(md, HasSubstr("- **Test pairs**: 600 held-out pairs"));
  EXPECT_THAT(md, HasSubstr("The first 500 of the 600 test pairs"));
}

TEST_F(ExperimentTest, DatasetProblemsHaveNoReferenceRowsAndShowSignals) {
  const std::string report_dir = Path("dataset");
  ASSERT_EQ(Run({{"spec", WriteSpec("digits.spec", kDatasetSpec)},
                 {"losses", "approximation, divergence"},
                 {"test_pairs", "3"},
                 {"output_dir", report_dir}}),
            0)
      << err_.str();
  auto results = ReadResults(report_dir + "/results.csv");
  EXPECT_EQ(results.size(), 2u);
  EXPECT_EQ(results.count("posterior_mean"), 0u);
  EXPECT_EQ(results["approximation"]["mse_ratio_to_pm"], "");
  const std::string md = ReadText(report_dir + "/report.md");
  EXPECT_THAT(md, HasSubstr("**No exact references**"));
  EXPECT_THAT(md, HasSubstr("trained on a dataset"));
  EXPECT_THAT(md, Not(HasSubstr("| x PM")));
  EXPECT_THAT(md, Not(HasSubstr("grids.svg")));
  EXPECT_THAT(md, HasSubstr("](signals.svg)"));
  // Numbered in order, each number once (n > 2 has no grid figure).
  EXPECT_THAT(md, HasSubstr("### 1. Test signals and their reconstructions"));
  EXPECT_THAT(md, HasSubstr("### 2. Training curves"));
  EXPECT_THAT(md, Not(HasSubstr("### 2. Test signals")));
  absl::StatusOr<XmlElement> signals = ParseXml(ReadText(report_dir + "/signals.svg"));
  ASSERT_THAT(signals, IsOk());
  EXPECT_THAT(PanelIds(*signals), UnorderedElementsAreArray({"signal-0", "signal-1", "signal-2"}));
  for (const XmlElement* panel : signals->WithAttribute("data-panel")) {
    std::set<std::string> series;
    for (const XmlElement* s : panel->WithAttribute("data-series")) {
      series.insert(s->Attr("data-series"));
    }
    EXPECT_THAT(series,
                UnorderedElementsAreArray({"truth", "measurement", "approximation", "divergence"}));
  }
  EXPECT_FALSE(std::ifstream(report_dir + "/grids.svg").good());
  // The default label and the first model: the spec file's name.
  absl::MutexLock lock(&fake_.state().mu);
  EXPECT_EQ(fake_.state().draw.model(), "experiment-approximation");
  EXPECT_THAT(md, HasSubstr("# invnet experiment: digits"));
}

// --seeds=3: three runs per loss, each a row, and per loss the mean +- standard error.
TEST_F(ExperimentTest, SeedsReportMeanAndStandardErrorPerLoss) {
  const std::string report_dir = Path("seeds");
  ASSERT_EQ(Run({{"spec", WriteSpec("toy.spec", kSpec)},
                 {"losses", "divergence,log-det"},
                 {"seeds", "3"},
                 {"test_pairs", "20"},
                 {"output_dir", report_dir}}),
            0)
      << err_.str();
  {
    absl::MutexLock lock(&fake_.state().mu);
    ASSERT_EQ(fake_.state().train_requests.size(), 6u);
    EXPECT_EQ(fake_.state().train_requests[4].model_name(), "experiment-log-det-s1");
    EXPECT_EQ(fake_.state().train_requests[4].training().seed(), 1u);
  }
  const std::string csv = ReadText(report_dir + "/results.csv");
  for (int seed = 0; seed < 3; ++seed) {
    EXPECT_THAT(csv, HasSubstr(absl::StrCat(",divergence,network,experiment-divergence-s", seed)));
  }
  const std::string md = ReadText(report_dir + "/report.md");
  EXPECT_THAT(md, HasSubstr("## Over 3 training seeds"));
  EXPECT_THAT(md, HasSubstr("| divergence regularised |    3 |"));
  EXPECT_THAT(md, HasSubstr("divergence regularised, seed 2"));
  EXPECT_THAT(out_.str(), HasSubstr("over 3 training seeds (mean ± standard error)"));
  EXPECT_THAT(err_.str(), HasSubstr("training 6 models, 3 training seeds per loss"));
}

TEST_F(ExperimentTest, AFailedJobIsReportedAndTheOthersEvaluated) {
  {
    absl::MutexLock lock(&fake_.state().mu);
    fake_.state().failing_models = {"experiment-log-det"};
  }
  const std::string report_dir = Path("partial");
  EXPECT_EQ(Run({{"spec", WriteSpec("toy.spec", kSpec)},
                 {"test_pairs", "10"},
                 {"output_dir", report_dir}}),
            1);
  EXPECT_THAT(err_.str(), HasSubstr("training failed for experiment-log-det"));
  EXPECT_THAT(err_.str(), HasSubstr("simulated failure"));
  auto results = ReadResults(report_dir + "/results.csv");
  EXPECT_EQ(results.count("log-det"), 0u);
  EXPECT_EQ(results.count("divergence"), 1u);
  EXPECT_THAT(ReadText(report_dir + "/report.md"), HasSubstr("**Training failed**"));
}

TEST_F(ExperimentTest, EveryJobFailingIsAnErrorWithoutAReport) {
  {
    absl::MutexLock lock(&fake_.state().mu);
    fake_.state().failing_models = {"x-approximation"};
  }
  EXPECT_EQ(Run({{"spec", WriteSpec("toy.spec", kSpec)},
                 {"name", "x"},
                 {"losses", "approximation"},
                 {"output_dir", Path("none")}}),
            1);
  EXPECT_THAT(err_.str(), HasSubstr("ABORTED: every training job failed: x-approximation"));
  EXPECT_FALSE(std::ifstream(Path("none") + "/report.md").good());
}

TEST_F(ExperimentTest, InteractiveProgressRedrawsOneLinePerJob) {
  ASSERT_EQ(Run({{"spec", WriteSpec("toy.spec", kSpec)},
                 {"losses", "logdet,reconstruction"},
                 {"test_pairs", "5"},
                 {"output_dir", Path("tty")}},
                /*interactive=*/true),
            0)
      << err_.str();
  const std::string err = err_.str();
  EXPECT_THAT(err, HasSubstr("\x1b[2A"));  // back up over the two lines
  EXPECT_THAT(err, HasSubstr("experiment-log-det         succeeded"));
  EXPECT_THAT(err, HasSubstr("experiment-reconstruction  succeeded"));
}

TEST_F(ExperimentTest, UsageErrorsExitTwoWithoutCallingTheServer) {
  const std::string spec = WriteSpec("toy.spec", kSpec);
  const std::string with_loss = WriteSpec("loss.spec",
                                          "preset: \"bimodal2d\"\n"
                                          "training { loss: LOSS_LOG_DET }\n");
  const std::string empty = WriteSpec("empty.spec", "training { steps: 10 }\n");
  const std::vector<std::vector<std::pair<std::string, std::string>>> cases = {
      {{"losses", "magic"}}, {{"losses", "logdet,LOSS_LOG_DET"}}, {{"losses", ""}},
      {{"test_pairs", "0"}}, {{"test_pairs", "2000000"}},         {{"name", "Upper"}},
      {{"name", "-dash"}},   {{"name", std::string(49, 'a')}},    {{"spec", with_loss}},
      {{"spec", empty}},     {{"spec", spec}, {"steps", "0"}},    {{"output_dir", ""}},
      {{"preset", ""}},
  };
  for (const auto& flags : cases) {
    SCOPED_TRACE(flags.front().first + "=" + flags.front().second);
    EXPECT_EQ(Run(flags), 2);
    EXPECT_THAT(err_.str(), HasSubstr("Run 'invnet experiment --help'"));
  }
  EXPECT_THAT(fake_.calls(), IsEmpty());
}

TEST(ExperimentPlanTest, DefaultsAndOverrides) {
  cli::Invocation inv;
  inv.args = {"experiment"};
  absl::StatusOr<cli::ExperimentPlan> plan = cli::BuildExperimentPlan(inv);
  ASSERT_THAT(plan, IsOk());
  EXPECT_EQ(plan->config.base.preset(), "bimodal2d");
  EXPECT_EQ(plan->config.label, "bimodal2d");
  EXPECT_EQ(plan->output_dir, "invnet-report-bimodal2d");
  EXPECT_EQ(plan->config.name_prefix, "experiment");
  EXPECT_THAT(plan->config.losses, ElementsAre(v1::LOSS_APPROXIMATION, v1::LOSS_LOG_DET,
                                               v1::LOSS_DIVERGENCE, v1::LOSS_RECONSTRUCTION));
  EXPECT_EQ(plan->config.test_pairs, 5000);
  EXPECT_EQ(plan->config.seed, 0u);
  EXPECT_FALSE(plan->config.base.training().has_steps());

  inv.flags.preset = "blur64";
  inv.flags.losses = "divergence,approximation";
  inv.flags.name = "run2";
  inv.flags.steps = 10;
  inv.specified = {"preset", "losses", "name", "steps"};
  plan = cli::BuildExperimentPlan(inv);
  ASSERT_THAT(plan, IsOk());
  // The report is named like its models.
  EXPECT_EQ(plan->config.label, "run2");
  EXPECT_EQ(plan->output_dir, "invnet-report-run2");
  EXPECT_THAT(plan->config.losses, ElementsAre(v1::LOSS_DIVERGENCE, v1::LOSS_APPROXIMATION));
  EXPECT_EQ(ModelNameFor(plan->config, v1::LOSS_DIVERGENCE, 0), "run2-divergence");
  EXPECT_EQ(plan->config.base.training().steps(), 10);
}

// --seeds=K: each loss K times, with consecutive training seeds from the spec's.
TEST(ExperimentPlanTest, SeedsPlanEveryLossOncePerTrainingSeed) {
  cli::Invocation inv;
  inv.args = {"experiment"};
  inv.flags.losses = "divergence,log-det";
  inv.flags.seeds = 3;
  inv.flags.name = "study";
  inv.specified = {"losses", "seeds", "name"};
  absl::StatusOr<cli::ExperimentPlan> plan = cli::BuildExperimentPlan(inv);
  ASSERT_THAT(plan, IsOk());
  EXPECT_EQ(plan->config.training_seeds, 3);
  std::vector<std::string> names;
  std::vector<uint64_t> seeds;
  for (const PlannedJob& job : PlanJobs(plan->config)) {
    names.push_back(job.model);
    seeds.push_back(job.training_seed);
  }
  EXPECT_THAT(names, ElementsAre("study-divergence-s0", "study-divergence-s1",
                                 "study-divergence-s2", "study-log-det-s0", "study-log-det-s1",
                                 "study-log-det-s2"));
  EXPECT_THAT(seeds, ElementsAre(0, 1, 2, 0, 1, 2));
  plan->config.base.mutable_training()->set_seed(40);
  EXPECT_EQ(PlanJobs(plan->config).back().model, "study-log-det-s42");

  for (int64_t bad : {0, -1, 101}) {
    inv.flags.seeds = bad;
    EXPECT_THAT(cli::BuildExperimentPlan(inv),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--seeds must lie in [1, 100]")))
        << bad;
  }
  // Names stay within the server's limit.
  inv.flags.seeds = 10;
  inv.flags.name = std::string(48, 'a');
  inv.flags.losses = "reconstruction";
  EXPECT_THAT(cli::BuildExperimentPlan(inv),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("63 characters")));
}

// A spec's model_name names both the models and the report (not the spec file's name).
TEST(ExperimentPlanTest, TheSpecsModelNameNamesTheModelsAndTheReport) {
  ScratchDirectory dir("plan");
  const std::string spec = dir.Path("my_problem.spec");
  std::ofstream(spec) << "model_name: \"toy\" preset: \"bimodal2d\"\n";
  cli::Invocation inv;
  inv.args = {"experiment"};
  inv.flags.spec = spec;
  inv.specified = {"spec"};
  absl::StatusOr<cli::ExperimentPlan> plan = cli::BuildExperimentPlan(inv);
  ASSERT_THAT(plan, IsOk());
  EXPECT_EQ(ModelNameFor(plan->config, v1::LOSS_DIVERGENCE, 0), "toy-divergence");
  EXPECT_EQ(plan->config.label, "toy");
  EXPECT_EQ(plan->output_dir, "invnet-report-toy");
  // Without model_name, the spec file's name.
  std::ofstream(spec) << "preset: \"bimodal2d\"\n";
  plan = cli::BuildExperimentPlan(inv);
  ASSERT_THAT(plan, IsOk());
  EXPECT_EQ(plan->config.label, "my_problem");
  EXPECT_EQ(ModelNameFor(plan->config, v1::LOSS_DIVERGENCE, 0), "experiment-divergence");
}

TEST(ParseLossListTest, NamesOrderAndErrors) {
  EXPECT_THAT(*ParseLossList("reconstruction, LOG_DET ,approximation"),
              ElementsAre(v1::LOSS_RECONSTRUCTION, v1::LOSS_LOG_DET, v1::LOSS_APPROXIMATION));
  for (const char* spelling : {"log-det", "logdet", "log_det", "LOSS_LOG_DET", "Log-Det"}) {
    EXPECT_THAT(*ParseLossList(spelling), ElementsAre(v1::LOSS_LOG_DET)) << spelling;
  }
  EXPECT_THAT(ParseLossList("divergence,bogus"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("'bogus'")));
  EXPECT_THAT(ParseLossList("divergence,divergence"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("twice")));
  EXPECT_THAT(ParseLossList(" , "), StatusIs(absl::StatusCode::kInvalidArgument));
}

// TrainAll over a gmock connection: Train answers as scripted per test, and every watch
// streams one update, the job SUCCEEDED with version 1.
class TrainAllTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ON_CALL(*connection_, WatchTrainingJob(_, _))
        .WillByDefault([](const v1::WatchTrainingJobRequest& request, const auto& on_update) {
          v1::WatchTrainingJobResponse update;
          update.mutable_job()->set_job_id(request.job_id());
          update.mutable_job()->set_state(v1::JOB_STATE_SUCCEEDED);
          update.mutable_job()->set_published_version(1);
          on_update(update);
          return absl::OkStatus();
        });
  }

  // Train: started as job "job-<model>", recording the request.
  absl::StatusOr<v1::TrainResponse> Start(const v1::TrainRequest& request) {
    absl::MutexLock lock(&mu_);
    requests_.push_back(request);
    v1::TrainResponse response;
    response.mutable_job()->set_job_id("job-" + request.model_name());
    response.mutable_job()->set_model_name(request.model_name());
    response.mutable_job()->set_state(v1::JOB_STATE_QUEUED);
    return response;
  }

  std::shared_ptr<::testing::NiceMock<MockConnection>> connection_ =
      std::make_shared<::testing::NiceMock<MockConnection>>();
  InvnetClient client_{std::shared_ptr<InvnetConnection>(connection_)};
  absl::Mutex mu_;
  std::vector<v1::TrainRequest> requests_ ABSL_GUARDED_BY(mu_);
};

// While the server's queue is full of someone else's jobs (RESOURCE_EXHAUSTED), TrainAll asks
// again every retry_interval until there is room, and says it is waiting.
TEST_F(TrainAllTest, RetriesWhileTheServerIsFull) {
  EXPECT_CALL(*connection_, Train(_))
      .WillOnce(Return(absl::ResourceExhaustedError("3 jobs queued (--max_queued_jobs)")))
      .WillOnce(Return(absl::ResourceExhaustedError("3 jobs queued (--max_queued_jobs)")))
      .WillRepeatedly([this](const v1::TrainRequest& r) { return Start(r); });
  ExperimentConfig config;
  config.base.mutable_problem()->mutable_operator_()->mutable_identity()->set_dim(2);
  config.losses = {v1::LOSS_APPROXIMATION, v1::LOSS_RECONSTRUCTION};
  config.retry_interval = absl::Milliseconds(20);
  std::ostringstream err;
  MultiJobProgress progress(&err, false, {"experiment-approximation", "experiment-reconstruction"});
  absl::StatusOr<TrainingOutcome> outcome = TrainAll(client_, config, &progress);
  ASSERT_THAT(outcome, IsOk());
  ASSERT_EQ(outcome->trained.size(), 2u);
  EXPECT_EQ(outcome->trained[0].model, "experiment-approximation");
  EXPECT_EQ(outcome->trained[0].job_id, "job-experiment-approximation");
  EXPECT_EQ(outcome->trained[1].model, "experiment-reconstruction");
  EXPECT_EQ(outcome->trained[1].version, 1);
  EXPECT_THAT(outcome->failed, IsEmpty());
  EXPECT_THAT(err.str(),
              HasSubstr("experiment-approximation: waiting (the server is at its job limit)"));
}

// With training_seeds > 1 each job carries its own training and initialisation seeds.
TEST_F(TrainAllTest, EachSeedsJobCarriesItsSeeds) {
  EXPECT_CALL(*connection_, Train(_)).Times(2).WillRepeatedly([this](const v1::TrainRequest& r) {
    return Start(r);
  });
  ExperimentConfig config;
  config.base.mutable_problem()->mutable_operator_()->mutable_identity()->set_dim(2);
  config.base.mutable_training()->set_seed(7);
  config.base.mutable_architecture()->set_seed(100);
  config.losses = {v1::LOSS_DIVERGENCE};
  config.training_seeds = 2;
  std::ostringstream err;
  MultiJobProgress progress(&err, false, {"experiment-divergence-s7", "experiment-divergence-s8"});
  absl::StatusOr<TrainingOutcome> outcome = TrainAll(client_, config, &progress);
  ASSERT_THAT(outcome, IsOk());
  ASSERT_EQ(outcome->trained.size(), 2u);
  EXPECT_EQ(outcome->trained[1].model, "experiment-divergence-s8");
  EXPECT_EQ(outcome->trained[1].training_seed, 8u);
  absl::MutexLock lock(&mu_);
  ASSERT_EQ(requests_.size(), 2u);
  EXPECT_EQ(requests_[0].training().seed(), 7u);
  EXPECT_EQ(requests_[0].architecture().seed(), 100u);
  EXPECT_EQ(requests_[0].training().loss(), v1::LOSS_DIVERGENCE);
  EXPECT_EQ(requests_[1].training().seed(), 8u);
  EXPECT_EQ(requests_[1].architecture().seed(), 101u);
  EXPECT_EQ(requests_[1].model_name(), "experiment-divergence-s8");
}

// A Train refused for another reason than RESOURCE_EXHAUSTED stops the experiment, and the jobs
// it had started are cancelled.
TEST_F(TrainAllTest, AnotherTrainErrorStopsTheExperimentAndCancelsItsJobs) {
  // The first job's watch stays open until it is cancelled.
  absl::Notification cancelled;
  EXPECT_CALL(*connection_, Train(_))
      .WillOnce([this](const v1::TrainRequest& r) { return Start(r); })
      .WillOnce(Return(absl::InvalidArgumentError("problem: no operator")));
  EXPECT_CALL(*connection_, WatchTrainingJob(_, _))
      .WillOnce([&](const v1::WatchTrainingJobRequest& request, const auto& on_update) {
        cancelled.WaitForNotificationWithTimeout(absl::Seconds(20));
        v1::WatchTrainingJobResponse update;
        update.mutable_job()->set_job_id(request.job_id());
        update.mutable_job()->set_state(v1::JOB_STATE_CANCELLED);
        on_update(update);
        return absl::OkStatus();
      });
  EXPECT_CALL(*connection_, CancelTrainingJob(_))
      .WillOnce([&](const v1::CancelTrainingJobRequest& request) {
        EXPECT_EQ(request.job_id(), "job-experiment-approximation");
        cancelled.Notify();
        return v1::CancelTrainingJobResponse();
      });
  ExperimentConfig config;
  config.losses = {v1::LOSS_APPROXIMATION, v1::LOSS_DIVERGENCE};
  std::ostringstream err;
  MultiJobProgress progress(&err, false, {"experiment-approximation", "experiment-divergence"});
  EXPECT_THAT(TrainAll(client_, config, &progress),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("train experiment-divergence: problem: no operator")));
  EXPECT_TRUE(cancelled.HasBeenNotified());
}

}  // namespace
}  // namespace invnet::client
