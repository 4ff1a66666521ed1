// `invnet experiment` over a gmock connection scripted as a server (SimulatedServer): the
// training schedule (concurrent jobs, retry on RESOURCE_EXHAUSTED), the evaluation on shared test
// pairs, and the report's numbers and figures checked against what the server answered.

#include "client/experiment.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <functional>
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
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "tests/client/canned_messages.h"
#include "tests/client/mock_connection.h"
#include "tests/testing/scratch_directory.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/xml.h"

namespace invnet::client {
namespace {

using ::invnet::client::testing::MakeJob;
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

const char* const kKeys[] = {"approximation", "log-det", "divergence", "reconstruction"};

// The simulated networks' inverse: x = ScaleFor(loss) * y.
float ScaleFor(v1::Loss loss) {
  switch (loss) {
    case v1::LOSS_LOG_DET:
      return 0.6f;
    case v1::LOSS_DIVERGENCE:
      return 0.5f;
    case v1::LOSS_RECONSTRUCTION:
      return 0.45f;
    default:
      return 1.0f;
  }
}

// `invnet experiment`'s server, scripted on a gmock connection (no gRPC): training jobs that run
// at most `max_jobs` at a time and publish their model when watched to the end, and canned
// answers to the evaluation and figure RPCs, so that the report can be checked against what
// "the server" said. Everything the experiment asks is recorded.
//   Train          job "job-<k>" RUNNING; RESOURCE_EXHAUSTED while `max_jobs` are unfinished
//   Watch          two RUNNING updates (half way with a validation, then done), 5 ms apart so
//                  that jobs interleave and later Trains meet a full server; then the slot is
//                  freed and the final update sent: FAILED "simulated failure" for a model in
//                  `failing_models`, else SUCCEEDED with the model published as version 1 (the
//                  request's problem, n and m of its operator, its training with the default
//                  target space, train_seconds k for the k-th published, and training curves)
//   GetModel       the published model
//   DrawTestPairs  [count, n] signals and [count, m] measurements, PairValue(seed, i, j)
//   Evaluate       references posterior_mean, map, wiener, pseudo_inverse (r = 0..3: mse
//                  0.5 + 0.1 r, ratio 1 + 0.2 r, rms_to_pm 0.05 r, rms_to_map 0.3 - 0.05 r; the
//                  posterior mean's mean std 1), none for a dataset problem; model k: mse 1 + k,
//                  ratio 2 + k, rms_to_pm 0.25 + k, rms_to_map 0.75 + k (with references),
//                  forward_error 0.01 (k + 1), converged 0.975, iterations 20.5, and for log-det
//                  and divergence networks the std: method "laplace-divergence", mean 0.5 + k,
//                  ratio mean 0.6 + k, median 2.1, q10 0.57, q90 3.63, undefined 0.025
//   Reconstruct    x = ScaleFor(loss) * y; Forward 2 x (the exact maps 3 x); Estimate posterior
//                  mean y / 2, MAP and A^+ y: y
class SimulatedServer {
 public:
  explicit SimulatedServer(MockConnection& connection) {
    using ::testing::AnyNumber;
    EXPECT_CALL(connection, Train(_)).Times(AnyNumber()).WillRepeatedly([this](const auto& r) {
      return Train(r);
    });
    EXPECT_CALL(connection, WatchTrainingJob(_, _))
        .Times(AnyNumber())
        .WillRepeatedly([this](const auto& r, const auto& on_update) {
          return Watch(r, on_update);
        });
    EXPECT_CALL(connection, GetModel(_)).Times(AnyNumber()).WillRepeatedly([this](const auto& r) {
      return GetModel(r);
    });
    EXPECT_CALL(connection, DrawTestPairs(_))
        .Times(AnyNumber())
        .WillRepeatedly([this](const auto& r) { return DrawTestPairs(r); });
    EXPECT_CALL(connection, Evaluate(_)).Times(AnyNumber()).WillRepeatedly([this](const auto& r) {
      return Evaluate(r);
    });
    EXPECT_CALL(connection, Reconstruct(_))
        .Times(AnyNumber())
        .WillRepeatedly([this](const auto& r) { return Reconstruct(r); });
    EXPECT_CALL(connection, Forward(_)).Times(AnyNumber()).WillRepeatedly([this](const auto& r) {
      return Forward(r);
    });
    EXPECT_CALL(connection, Estimate(_)).Times(AnyNumber()).WillRepeatedly([this](const auto& r) {
      return Estimate(r);
    });
  }

  // A deterministic "random" value in [-2, 2) for DrawTestPairs.
  static float PairValue(uint64_t seed, int64_t row, int64_t col) {
    return static_cast<float>(2.0 * std::sin(1.3 * static_cast<double>(seed) +
                                             0.7 * static_cast<double>(row) +
                                             0.37 * static_cast<double>(col) + 0.1));
  }

  absl::Mutex mu;
  // Set up by the test.
  int max_jobs ABSL_GUARDED_BY(mu) = 2;
  std::set<std::string> failing_models ABSL_GUARDED_BY(mu);
  // Recorded.
  int calls ABSL_GUARDED_BY(mu) = 0;
  int train_refusals ABSL_GUARDED_BY(mu) = 0;  // Train calls answered RESOURCE_EXHAUSTED
  int most_running ABSL_GUARDED_BY(mu) = 0;    // the most unfinished jobs at once
  std::vector<v1::TrainRequest> train_requests ABSL_GUARDED_BY(mu);  // every accepted Train
  std::map<std::string, v1::Model> models ABSL_GUARDED_BY(mu);       // published, by name
  v1::DrawTestPairsRequest draw ABSL_GUARDED_BY(mu);
  v1::EvaluateRequest evaluate ABSL_GUARDED_BY(mu);

 private:
  static bool HasStd(v1::Loss loss) {
    return loss == v1::LOSS_DIVERGENCE || loss == v1::LOSS_LOG_DET;
  }
  static std::pair<int64_t, int64_t> OperatorDims(const v1::Operator& op) {
    if (op.has_identity()) return {op.identity().dim(), op.identity().dim()};
    if (op.has_dense()) return {op.dense().matrix().shape(0), op.dense().matrix().shape(1)};
    return {0, 0};
  }
  static v1::Tensor Scaled(const v1::Tensor& in, float factor) {
    v1::Tensor out = in;
    for (float& v : *out.mutable_values()) v *= factor;
    return out;
  }

  absl::StatusOr<v1::TrainResponse> Train(const v1::TrainRequest& request) {
    absl::MutexLock lock(&mu);
    ++calls;
    if (running_ >= max_jobs) {
      ++train_refusals;
      return absl::ResourceExhaustedError("2 jobs running (--max_jobs)");
    }
    ++running_;
    most_running = std::max(most_running, running_);
    train_requests.push_back(request);
    const std::string id = absl::StrCat("job-", train_requests.size());
    const int64_t steps = request.training().has_steps() ? request.training().steps() : 100;
    v1::TrainingJob job = MakeJob(id, request.model_name(), v1::JOB_STATE_RUNNING, 0, steps);
    *job.mutable_problem() = request.problem();
    *job.mutable_training() = request.training();
    jobs_[id] = job;
    v1::TrainResponse response;
    *response.mutable_job() = job;
    return response;
  }

  absl::Status Watch(const v1::WatchTrainingJobRequest& request,
                     const std::function<void(const v1::WatchTrainingJobResponse&)>& on_update) {
    v1::TrainingJob job;
    {
      absl::MutexLock lock(&mu);
      ++calls;
      auto it = jobs_.find(request.job_id());
      if (it == jobs_.end()) return absl::NotFoundError("job " + request.job_id());
      job = it->second;
    }
    auto send = [&on_update](const v1::TrainingJob& update) {
      v1::WatchTrainingJobResponse message;
      *message.mutable_job() = update;
      on_update(message);
      absl::SleepFor(absl::Milliseconds(5));
    };
    const int64_t total = job.total_steps();
    job.set_step(total / 2);
    job.mutable_last_validation()->set_step(total / 2);
    job.mutable_last_validation()->set_mse(0.3);
    job.set_eta_seconds(1);
    send(job);
    job.set_step(total);
    send(job);
    {
      absl::MutexLock lock(&mu);
      --running_;
      if (failing_models.count(job.model_name()) > 0) {
        job.set_state(v1::JOB_STATE_FAILED);
        job.set_error("simulated failure");
      } else {
        job.set_state(v1::JOB_STATE_SUCCEEDED);
        job.set_published_version(Publish(job));
      }
      job.set_elapsed_seconds(1.0);
    }
    send(job);
    return absl::OkStatus();
  }

  int64_t Publish(const v1::TrainingJob& job) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    v1::Model& model = models[job.model_name()];
    model.set_name(job.model_name());
    v1::ModelVersion* v = model.add_versions();
    v->set_name(job.model_name());
    v->set_version(model.versions_size());
    v->set_job_id(job.job_id());
    *v->mutable_problem() = job.problem();
    const auto [m, n] = OperatorDims(job.problem().operator_());
    v->mutable_architecture()->set_dim(n);
    v->set_measurement_dim(m);
    *v->mutable_training() = job.training();
    v->mutable_training()->set_target_space(v->training().loss() == v1::LOSS_DIVERGENCE || m != n
                                                ? v1::TARGET_SPACE_NORMAL
                                                : v1::TARGET_SPACE_MEASUREMENT);
    const double k = static_cast<double>(++published_);
    (*v->mutable_metrics())["train_seconds"] = k;
    auto curve = [&](const std::string& name, std::vector<double> values) {
      v1::Curve* c = v->add_curves();
      c->set_name(name);
      for (double value : values) c->add_values(value);
    };
    curve("step", {10, 20, 30, 40, 50, 60, 70, 80, 90, 100});
    curve("loss", {1.0, 0.5, 0.4, 0.3, 0.25, 0.2, 0.2, 0.18, 0.17, 0.1 * k});
    curve("val_step", {50, 100});
    curve("val_mse", {0.3, 0.1 * k});
    curve("val_forward_error", {0.2, 0.05 * k});
    return v->version();
  }

  // The latest version of a published model, or null.
  const v1::ModelVersion* Latest(const std::string& name) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    auto it = models.find(name);
    return it == models.end() ? nullptr : &it->second.versions(it->second.versions_size() - 1);
  }

  absl::StatusOr<v1::GetModelResponse> GetModel(const v1::GetModelRequest& request) {
    absl::MutexLock lock(&mu);
    ++calls;
    auto it = models.find(request.name());
    if (it == models.end()) return absl::NotFoundError("model " + request.name());
    v1::GetModelResponse response;
    *response.mutable_model() = it->second;
    return response;
  }

  absl::StatusOr<v1::DrawTestPairsResponse> DrawTestPairs(const v1::DrawTestPairsRequest& r) {
    absl::MutexLock lock(&mu);
    ++calls;
    draw = r;
    const v1::ModelVersion* latest = Latest(r.model());
    if (latest == nullptr) return absl::NotFoundError("model " + r.model());
    const int64_t n = latest->architecture().dim(), m = latest->measurement_dim();
    v1::DrawTestPairsResponse response;
    v1::Tensor* x = response.mutable_signals();
    v1::Tensor* y = response.mutable_measurements();
    x->add_shape(r.count());
    x->add_shape(n);
    y->add_shape(r.count());
    y->add_shape(m);
    for (int64_t i = 0; i < r.count(); ++i) {
      for (int64_t j = 0; j < n; ++j) x->add_values(PairValue(r.seed(), i, j));
      for (int64_t k = 0; k < m; ++k) y->add_values(PairValue(r.seed() + 1, i, k));
    }
    return response;
  }

  absl::StatusOr<v1::EvaluateResponse> Evaluate(const v1::EvaluateRequest& request) {
    absl::MutexLock lock(&mu);
    ++calls;
    evaluate = request;
    v1::EvaluateResponse response;
    response.set_count(request.count());
    response.set_seed(request.seed());
    const v1::ModelVersion* first = Latest(request.models(0).model());
    if (first == nullptr) return absl::NotFoundError("model " + request.models(0).model());
    const bool references = !first->problem().has_dataset();
    if (!references) {
      response.set_references_unavailable("model '" + request.models(0).model() +
                                          "' was trained on a dataset");
    } else {
      const char* kEstimators[] = {"posterior_mean", "map", "wiener", "pseudo_inverse"};
      for (int r = 0; r < 4; ++r) {
        v1::EstimatorScore* score = response.add_references();
        *score = NotApplicableScore();
        score->set_estimator(kEstimators[r]);
        score->set_mse(0.5 + 0.1 * r);
        score->set_mse_ratio_to_pm(1 + 0.2 * r);
        score->set_rms_to_pm(0.05 * r);
        score->set_rms_to_map(0.3 - 0.05 * r);
        if (r == 0) score->set_mean_posterior_std(1.0);
      }
    }
    for (int k = 0; k < request.models_size(); ++k) {
      const v1::ModelReference& ref = request.models(k);
      const v1::ModelVersion* version = Latest(ref.model());
      if (version == nullptr) return absl::NotFoundError("model " + ref.model());
      v1::EstimatorScore* score = response.add_models();
      *score = NotApplicableScore();
      score->set_model(ref.model());
      score->set_version(version->version());
      score->set_mse(1.0 + k);
      if (references) {
        score->set_mse_ratio_to_pm(2.0 + k);
        score->set_rms_to_pm(0.25 + k);
        score->set_rms_to_map(0.75 + k);
      }
      score->set_forward_error(0.01 * (k + 1));
      score->set_converged_fraction(0.975);
      score->set_mean_iterations(20.5);
      if (!request.posterior_std()) continue;
      if (!HasStd(version->training().loss())) {
        score->set_posterior_std_unavailable("posterior_std: no theory for this loss");
        continue;
      }
      score->set_posterior_std_method("laplace-divergence");
      score->set_mean_posterior_std(0.5 + k);
      score->set_std_ratio_mean(0.6 + k);
      score->set_std_ratio_median(2.1);
      score->set_std_ratio_q10(0.57);
      score->set_std_ratio_q90(3.63);
      score->set_std_undefined_fraction(0.025);
    }
    return response;
  }

  absl::StatusOr<v1::ReconstructResponse> Reconstruct(const v1::ReconstructRequest& request) {
    absl::MutexLock lock(&mu);
    ++calls;
    const v1::ModelVersion* version = Latest(request.model());
    if (version == nullptr) return absl::NotFoundError("model " + request.model());
    v1::ReconstructResponse response;
    response.set_model(request.model());
    response.set_version(version->version());
    *response.mutable_reconstructions() =
        Scaled(request.measurements(), ScaleFor(version->training().loss()));
    return response;
  }

  absl::StatusOr<v1::ForwardResponse> Forward(const v1::ForwardRequest& request) {
    absl::MutexLock lock(&mu);
    ++calls;
    if (Latest(request.model()) == nullptr) return absl::NotFoundError("model " + request.model());
    const bool exact = request.map() == v1::FORWARD_MAP_OPERATOR ||
                       request.map() == v1::FORWARD_MAP_NORMAL_OPERATOR;
    v1::ForwardResponse response;
    *response.mutable_outputs() = Scaled(request.signals(), exact ? 3.0f : 2.0f);
    return response;
  }

  absl::StatusOr<v1::EstimateResponse> Estimate(const v1::EstimateRequest& request) {
    absl::MutexLock lock(&mu);
    ++calls;
    if (Latest(request.model()) == nullptr) return absl::NotFoundError("model " + request.model());
    v1::EstimateResponse response;
    *response.mutable_posterior_mean() = Scaled(request.measurements(), 0.5f);
    *response.mutable_map() = request.measurements();
    *response.mutable_pseudo_inverse() = request.measurements();
    return response;
  }

  int running_ ABSL_GUARDED_BY(mu) = 0;
  int published_ ABSL_GUARDED_BY(mu) = 0;
  std::map<std::string, v1::TrainingJob> jobs_ ABSL_GUARDED_BY(mu);
};


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
      return std::make_unique<InvnetClient>(std::shared_ptr<InvnetConnection>(connection_),
                                            options);
    };
    return cli::Main(inv, ctx);
  }

  std::string ReadText(const std::string& path) {
    absl::StatusOr<std::string> text = ReadFileToString(path);
    EXPECT_THAT(text, IsOk());
    return text.ok() ? *text : "";
  }

  std::shared_ptr<::testing::StrictMock<MockConnection>> connection_ =
      std::make_shared<::testing::StrictMock<MockConnection>>();
  SimulatedServer server_{*connection_};
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
    absl::MutexLock lock(&server_.mu);
    const SimulatedServer& s = server_;
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
    absl::MutexLock lock(&server_.mu);
    const v1::EvaluateRequest& evaluate = server_.evaluate;
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

  // The server's numbers (SimulatedServer's canned scores), shown as they came.
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
    absl::MutexLock lock(&server_.mu);
    for (const auto& [name, m] : server_.models) {
      train_seconds[name] = m.versions(0).metrics().at("train_seconds");
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
    absl::MutexLock lock(&server_.mu);
    EXPECT_EQ(server_.evaluate.count(), 600);
    EXPECT_EQ(server_.draw.count(), 600);
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
  absl::MutexLock lock(&server_.mu);
  EXPECT_EQ(server_.draw.model(), "experiment-approximation");
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
    absl::MutexLock lock(&server_.mu);
    ASSERT_EQ(server_.train_requests.size(), 6u);
    EXPECT_EQ(server_.train_requests[4].model_name(), "experiment-log-det-s1");
    EXPECT_EQ(server_.train_requests[4].training().seed(), 1u);
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
    absl::MutexLock lock(&server_.mu);
    server_.failing_models = {"experiment-log-det"};
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
    absl::MutexLock lock(&server_.mu);
    server_.failing_models = {"x-approximation"};
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
  absl::MutexLock lock(&server_.mu);
  EXPECT_EQ(server_.calls, 0);
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
