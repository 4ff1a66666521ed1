#include "client/experiment.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "client/format.h"
#include "proto/base/status.h"
#include "proto/base/status_macros.h"

namespace invnet::client {
namespace {

// At most this many float values per Reconstruct/Forward/Estimate call (16 MiB), so large test
// sets stay far below the message limits.
constexpr int64_t kValuesPerCall = int64_t{1} << 22;
// The regular grids of the 2-D figures.
constexpr int64_t kGridLines = 15;
constexpr int64_t kGridPointsPerLine = 40;

// ---------------------------------------------------------------------------------------------
// Training.

// One submitted job, shared between the main thread and its watcher.
struct WatchedJob {
  size_t index = 0;  // into PlanJobs(config)
  std::string job_id;
  std::thread watcher;
  // Guarded by Shared::mu.
  std::optional<v1::TrainingJob> latest;
  bool changed = false;
  bool done = false;
  absl::Status watch_status;
  // Main thread only.
  bool joined = false;
};

struct Shared {
  absl::Mutex mu;
  absl::CondVar cv;
};

void StartWatcher(const InvnetClient& client, Shared* shared, WatchedJob* job) {
  job->watcher = std::thread([&client, shared, job] {
    absl::StatusOr<v1::TrainingJob> last =
        client.WatchTrainingJob(job->job_id, [shared, job](const v1::TrainingJob& update) {
          absl::MutexLock lock(&shared->mu);
          job->latest = update;
          job->changed = true;
          shared->cv.SignalAll();
        });
    absl::MutexLock lock(&shared->mu);
    if (last.ok()) {
      job->latest = *last;
    } else {
      job->watch_status = last.status();
    }
    job->changed = true;
    job->done = true;
    shared->cv.SignalAll();
  });
}

bool Finished(v1::JobState state) {
  return state == v1::JOB_STATE_SUCCEEDED || state == v1::JOB_STATE_FAILED ||
         state == v1::JOB_STATE_CANCELLED;
}

// ---------------------------------------------------------------------------------------------
// Evaluation helpers.

int64_t RowsPerCall(int64_t cols) { return std::max<int64_t>(1, kValuesPerCall / cols); }

// A response tensor, checked to be [rows, cols].
absl::StatusOr<DenseTensor> Expect(const v1::Tensor& proto, int64_t rows, int64_t cols,
                                   absl::string_view field) {
  INVNET_ASSIGN_OR_RETURN(DenseTensor t, DenseTensor::FromProto(proto, field));
  if (!t.is_matrix() || t.rows() != rows || t.cols() != cols) {
    return absl::InvalidArgumentError(absl::StrCat("the server's ", field, " has shape ",
                                                   ShapeToString(t.shape), ", expected [", rows,
                                                   ", ", cols, "]"));
  }
  return t;
}

// `call(begin, count)`'s answers for consecutive ranges of `rows` rows, each small enough that
// a request of `cols` values per row stays within kValuesPerCall, stacked in order.
template <typename Call>
absl::StatusOr<DenseTensor> InChunks(int64_t rows, int64_t cols, const Call& call) {
  DenseTensor out;
  const int64_t step = RowsPerCall(cols);
  for (int64_t begin = 0; begin < rows; begin += step) {
    const int64_t count = std::min(step, rows - begin);
    INVNET_ASSIGN_OR_RETURN(DenseTensor part, call(begin, count));
    AppendRows(part, &out);
  }
  return out;
}

// phi^-1(y) of model `m`.
absl::StatusOr<DenseTensor> ReconstructAll(const InvnetClient& client, const TrainedModel& m,
                                           int64_t n, const DenseTensor& y) {
  return InChunks(y.rows(), std::max(y.cols(), n),
                  [&](int64_t begin, int64_t count) -> absl::StatusOr<DenseTensor> {
                    v1::ReconstructRequest request;
                    request.set_model(m.model);
                    request.set_version(m.version);
                    RowRange(y, begin, count).ToProto(request.mutable_measurements());
                    absl::StatusOr<v1::ReconstructResponse> response = client.Reconstruct(request);
                    if (!response.ok()) {
                      return Annotate(response.status(), absl::StrCat("reconstruct with model ",
                                                                      m.model, " version ",
                                                                      m.version));
                    }
                    return Expect(response->reconstructions(), count, n, "reconstructions");
                  });
}

// `map` (the network phi, or the exact A x or A^T A x of its problem) of model `m` on x;
// `out_cols` is the map's output width.
absl::StatusOr<DenseTensor> ForwardAll(const InvnetClient& client, const TrainedModel& m,
                                       const DenseTensor& x, v1::ForwardMap map,
                                       int64_t out_cols) {
  return InChunks(x.rows(), std::max(x.cols(), out_cols),
                  [&](int64_t begin, int64_t count) -> absl::StatusOr<DenseTensor> {
                    v1::ForwardRequest request;
                    request.set_model(m.model);
                    request.set_version(m.version);
                    request.set_map(map);
                    RowRange(x, begin, count).ToProto(request.mutable_signals());
                    absl::StatusOr<v1::ForwardResponse> response = client.Forward(request);
                    if (!response.ok()) {
                      return Annotate(response.status(), absl::StrCat("forward with model ",
                                                                      m.model, " version ",
                                                                      m.version));
                    }
                    return Expect(response->outputs(), count, out_cols, "outputs");
                  });
}

// The exact posterior mean, MAP and A^+ y on `y`, for the figures. FAILED_PRECONDITION from the
// server is returned as it is (the caller turns it into "not available").
struct ExactMaps {
  DenseTensor posterior_mean, map, pseudo_inverse;
};
absl::StatusOr<ExactMaps> EstimateAll(const InvnetClient& client, const TrainedModel& m,
                                      int64_t n, const DenseTensor& y) {
  ExactMaps out;
  const int64_t step = RowsPerCall(std::max(y.cols(), n));
  for (int64_t begin = 0; begin < y.rows(); begin += step) {
    const int64_t count = std::min(step, y.rows() - begin);
    v1::EstimateRequest request;
    request.set_model(m.model);
    request.set_version(m.version);
    request.add_estimators(v1::ESTIMATOR_POSTERIOR_MEAN);
    request.add_estimators(v1::ESTIMATOR_MAP);
    request.add_estimators(v1::ESTIMATOR_PSEUDO_INVERSE);
    RowRange(y, begin, count).ToProto(request.mutable_measurements());
    INVNET_ASSIGN_OR_RETURN(v1::EstimateResponse response, client.Estimate(request));
    INVNET_ASSIGN_OR_RETURN(DenseTensor pm,
                            Expect(response.posterior_mean(), count, n, "posterior_mean"));
    INVNET_ASSIGN_OR_RETURN(DenseTensor map, Expect(response.map(), count, n, "map"));
    INVNET_ASSIGN_OR_RETURN(DenseTensor pinv,
                            Expect(response.pseudo_inverse(), count, n, "pseudo_inverse"));
    AppendRows(pm, &out.posterior_mean);
    AppendRows(map, &out.map);
    AppendRows(pinv, &out.pseudo_inverse);
  }
  return out;
}

// A robust bounding interval of column `col`: the 0.5% and 99.5% quantiles, widened by 10%.
std::pair<double, double> ColumnExtent(const DenseTensor& m, int64_t col) {
  std::vector<float> values;
  values.reserve(static_cast<size_t>(m.rows()));
  for (int64_t r = 0; r < m.rows(); ++r) values.push_back(m.at(r, col));
  std::sort(values.begin(), values.end());
  const size_t last = values.size() - 1;
  double lo = values[static_cast<size_t>(0.005 * static_cast<double>(last))];
  double hi = values[static_cast<size_t>(0.995 * static_cast<double>(last) + 0.5)];
  if (!(hi > lo)) {
    lo -= 0.5;
    hi += 0.5;
  }
  const double pad = 0.1 * (hi - lo);
  return {lo - pad, hi + pad};
}

Grid GridOver(const DenseTensor& samples) {
  const auto [x_lo, x_hi] = ColumnExtent(samples, 0);
  const auto [y_lo, y_hi] = ColumnExtent(samples, 1);
  return MakeGrid(x_lo, x_hi, y_lo, y_hi, kGridLines, kGridPointsPerLine);
}

absl::StatusOr<v1::ModelVersion> Describe(const InvnetClient& client, const TrainedModel& m) {
  v1::GetModelRequest request;
  request.set_name(m.model);
  INVNET_ASSIGN_OR_RETURN(v1::GetModelResponse response, client.GetModel(request));
  for (const v1::ModelVersion& version : response.model().versions()) {
    if (version.version() == m.version) return version;
  }
  return absl::NotFoundError(
      absl::StrCat("model ", m.model, " has no version ", m.version, " (deleted meanwhile?)"));
}

}  // namespace

const std::vector<LossInfo>& ExperimentLosses() {
  // Okabe-Ito colours: distinguishable with the common colour-vision deficiencies.
  static const auto* losses = new std::vector<LossInfo>{
      {v1::LOSS_APPROXIMATION, "approximation", "approximation training", "approximation",
       "#E69F00"},
      {v1::LOSS_LOG_DET, "log-det", "log-det regularised", "log-det", "#0072B2"},
      {v1::LOSS_DIVERGENCE, "divergence", "divergence regularised", "divergence", "#CC79A7"},
      {v1::LOSS_RECONSTRUCTION, "reconstruction", "reconstruction training", "reconstruction",
       "#009E73"},
  };
  return *losses;
}

const LossInfo& InfoFor(v1::Loss loss) {
  for (const LossInfo& info : ExperimentLosses()) {
    if (info.loss == loss) return info;
  }
  return ExperimentLosses().front();  // unreachable for the four losses
}

absl::StatusOr<std::vector<v1::Loss>> ParseLossList(absl::string_view list) {
  std::vector<v1::Loss> losses;
  for (absl::string_view word : absl::StrSplit(list, ',', absl::SkipWhitespace())) {
    INVNET_ASSIGN_OR_RETURN(v1::Loss loss, ParseLossName(word));
    if (std::find(losses.begin(), losses.end(), loss) != losses.end()) {
      return absl::InvalidArgumentError(absl::StrCat("'", word, "' is listed twice"));
    }
    losses.push_back(loss);
  }
  if (losses.empty()) return absl::InvalidArgumentError("no loss given");
  return losses;
}

uint64_t TrainingSeedFor(const ExperimentConfig& config, int64_t index) {
  return config.base.training().seed() + static_cast<uint64_t>(index);
}

std::string ModelNameFor(const ExperimentConfig& config, v1::Loss loss, uint64_t training_seed) {
  std::string name = absl::StrCat(config.name_prefix, "-", InfoFor(loss).key);
  if (config.training_seeds > 1) absl::StrAppend(&name, "-s", training_seed);
  return name;
}

std::vector<PlannedJob> PlanJobs(const ExperimentConfig& config) {
  std::vector<PlannedJob> jobs;
  for (v1::Loss loss : config.losses) {
    for (int64_t i = 0; i < std::max<int64_t>(1, config.training_seeds); ++i) {
      const uint64_t seed = TrainingSeedFor(config, i);
      jobs.push_back({loss, seed, ModelNameFor(config, loss, seed)});
    }
  }
  return jobs;
}

Grid MakeGrid(double x_lo, double x_hi, double y_lo, double y_hi, int64_t lines,
              int64_t points_per_line) {
  Grid grid;
  grid.lines = lines;
  grid.points_per_line = points_per_line;
  grid.points = DenseTensor::Matrix(2 * lines * points_per_line, 2);
  auto at = [](double lo, double hi, int64_t i, int64_t count) {
    return lo + (hi - lo) * static_cast<double>(i) / static_cast<double>(count - 1);
  };
  int64_t row = 0;
  for (int64_t k = 0; k < lines; ++k) {  // along the first coordinate
    for (int64_t j = 0; j < points_per_line; ++j, ++row) {
      grid.points.at(row, 0) = static_cast<float>(at(x_lo, x_hi, j, points_per_line));
      grid.points.at(row, 1) = static_cast<float>(at(y_lo, y_hi, k, lines));
    }
  }
  for (int64_t k = 0; k < lines; ++k) {  // along the second coordinate
    for (int64_t j = 0; j < points_per_line; ++j, ++row) {
      grid.points.at(row, 0) = static_cast<float>(at(x_lo, x_hi, k, lines));
      grid.points.at(row, 1) = static_cast<float>(at(y_lo, y_hi, j, points_per_line));
    }
  }
  return grid;
}

absl::StatusOr<TrainingOutcome> TrainAll(const InvnetClient& client, const ExperimentConfig& config,
                                         MultiJobProgress* progress) {
  const std::vector<PlannedJob> planned = PlanJobs(config);
  const size_t total = planned.size();
  Shared shared;
  std::vector<std::unique_ptr<WatchedJob>> jobs;
  std::vector<std::optional<v1::TrainingJob>> finals(total);
  size_t next = 0;       // the next job to submit
  size_t running = 0;    // submitted, watcher not joined yet
  bool refused = false;  // the server answered RESOURCE_EXHAUSTED and no slot has freed since
  absl::Time retry_at = absl::InfinitePast();
  absl::Status fatal;

  // Shows what the watchers saw; joins the watchers of finished jobs and returns how many.
  auto collect = [&]() {
    size_t finished = 0;
    for (auto& job : jobs) {
      bool done;
      {
        absl::MutexLock lock(&shared.mu);
        if (job->changed && job->latest.has_value()) progress->Update(job->index, *job->latest);
        job->changed = false;
        done = job->done;
      }
      if (!done || job->joined) continue;
      job->watcher.join();
      job->joined = true;
      --running;
      ++finished;
      finals[job->index] = job->latest;
      if (!job->watch_status.ok() && fatal.ok()) {
        fatal = Annotate(job->watch_status,
                         absl::StrCat("watching the training of ", planned[job->index].model));
      }
    }
    return finished;
  };

  while (true) {
    if (collect() > 0 || absl::Now() >= retry_at) refused = false;
    while (fatal.ok() && !refused && next < total) {
      v1::TrainRequest request = config.base;
      request.set_model_name(planned[next].model);
      request.mutable_training()->set_loss(planned[next].loss);
      if (config.training_seeds > 1) {
        // Run i draws its data, noise and probes with training seed base + i and initialises its
        // network with architecture seed base + i: independent repetitions of the training.
        const uint64_t offset = planned[next].training_seed - TrainingSeedFor(config, 0);
        request.mutable_training()->set_seed(planned[next].training_seed);
        request.mutable_architecture()->set_seed(config.base.architecture().seed() + offset);
      }
      absl::StatusOr<v1::TrainResponse> response = client.Train(request);
      if (response.status().code() == absl::StatusCode::kResourceExhausted) {
        // Again when one of ours finishes, or after retry_interval when none of ours runs.
        refused = true;
        retry_at = running > 0 ? absl::InfiniteFuture() : absl::Now() + config.retry_interval;
        for (size_t i = next; i < total; ++i) {
          progress->SetWaiting(i, "the server is at its job limit");
        }
        break;
      }
      if (!response.ok()) {
        fatal = absl::Status(
            response.status().code(),
            absl::StrCat("train ", request.model_name(), ": ", response.status().message()));
        break;
      }
      auto job = std::make_unique<WatchedJob>();
      job->index = next;
      job->job_id = response->job().job_id();
      progress->Update(next, response->job());
      StartWatcher(client, &shared, job.get());
      jobs.push_back(std::move(job));
      ++running;
      ++next;
    }
    progress->Flush();
    if (!fatal.ok() || (next == total && running == 0)) break;

    // Sleep until a watcher reports something or it is time to ask the server again.
    const absl::Time deadline = std::min(retry_at, absl::Now() + absl::Seconds(1));
    absl::MutexLock lock(&shared.mu);
    auto something_new = [&]() {
      for (const auto& job : jobs) {
        if (job->changed) return true;
      }
      return false;
    };
    while (!something_new() && absl::Now() < deadline) {
      shared.cv.WaitWithDeadline(&shared.mu, deadline);
    }
  }

  if (!fatal.ok()) {
    // Cancel what we started; each watcher ends when its job does.
    for (auto& job : jobs) {
      if (job->joined) continue;
      v1::CancelTrainingJobRequest cancel;
      cancel.set_job_id(job->job_id);
      (void)client.CancelTrainingJob(cancel);
    }
    for (auto& job : jobs) {
      if (!job->joined) job->watcher.join();
      job->joined = true;
    }
    progress->Finish();
    return fatal;
  }
  progress->Finish();

  TrainingOutcome outcome;
  for (size_t i = 0; i < total; ++i) {
    const PlannedJob& plan = planned[i];
    const v1::TrainingJob& job = *finals[i];
    if (job.state() == v1::JOB_STATE_SUCCEEDED) {
      outcome.trained.push_back(
          {plan.loss, plan.training_seed, plan.model, job.published_version(), job.job_id()});
      continue;
    }
    std::string error = JobStateName(job.state());
    if (!Finished(job.state())) absl::StrAppend(&error, " (the watch ended before the job did)");
    if (!job.error().empty()) absl::StrAppend(&error, ": ", job.error());
    outcome.failed.push_back({plan.loss, plan.training_seed, plan.model, job.job_id(), error});
  }
  return outcome;
}

absl::StatusOr<ExperimentData> Evaluate(const InvnetClient& client, const ExperimentConfig& config,
                                        const TrainingOutcome& outcome) {
  if (outcome.trained.empty()) {
    return absl::InvalidArgumentError("no trained model to evaluate");
  }
  ExperimentData data;
  data.config = config;
  data.failed = outcome.failed;
  const TrainedModel& first = outcome.trained.front();
  INVNET_ASSIGN_OR_RETURN(data.problem_source, Describe(client, first));
  data.n = data.problem_source.architecture().dim();
  data.m = data.problem_source.measurement_dim();

  // The numbers: every model and the exact references on the same pairs, scored by the server.
  v1::EvaluateRequest evaluate;
  for (const TrainedModel& trained : outcome.trained) {
    v1::ModelReference* ref = evaluate.add_models();
    ref->set_model(trained.model);
    ref->set_version(trained.version);
  }
  evaluate.set_count(config.test_pairs);
  evaluate.set_seed(config.seed);
  evaluate.set_posterior_std(true);
  absl::StatusOr<v1::EvaluateResponse> scores = client.Evaluate(evaluate);
  if (!scores.ok()) return Annotate(scores.status(), "evaluating the trained models");
  if (scores->models_size() != static_cast<int>(outcome.trained.size())) {
    return absl::InvalidArgumentError(absl::StrCat("the server scored ", scores->models_size(),
                                                   " models of the ", outcome.trained.size(),
                                                   " asked for"));
  }
  data.references.scores.assign(scores->references().begin(), scores->references().end());
  data.references.available = !data.references.scores.empty();
  data.references.unavailable_reason = scores->references_unavailable();

  // The figures: the first kFigurePairs of the same pairs (DrawTestPairs with the same count
  // and seed draws them as Evaluate did).
  v1::DrawTestPairsRequest draw;
  draw.set_model(first.model);
  draw.set_version(first.version);
  draw.set_count(config.test_pairs);
  draw.set_seed(config.seed);
  absl::StatusOr<v1::DrawTestPairsResponse> pairs = client.DrawTestPairs(draw);
  if (!pairs.ok()) {
    return Annotate(pairs.status(), absl::StrCat("drawing test pairs from model ", first.model));
  }
  INVNET_ASSIGN_OR_RETURN(DenseTensor x,
                          Expect(pairs->signals(), config.test_pairs, data.n, "signals"));
  INVNET_ASSIGN_OR_RETURN(DenseTensor y,
                          Expect(pairs->measurements(), config.test_pairs, data.m, "measurements"));
  const int64_t shown = std::min(config.test_pairs, kFigurePairs);
  data.x = RowRange(x, 0, shown);
  data.y = RowRange(y, 0, shown);
  if (data.n == 2) data.x_grid = GridOver(data.x);
  if (data.m == 2 && data.n == 2) data.y_grid = GridOver(data.y);

  if (data.references.available) {
    absl::StatusOr<ExactMaps> exact = EstimateAll(client, first, data.n, data.y);
    if (!exact.ok()) {
      return Annotate(exact.status(), absl::StrCat("estimate with model ", first.model));
    }
    data.references.posterior_mean = std::move(exact->posterior_mean);
    data.references.map = std::move(exact->map);
    if (data.y_grid.has_value()) {
      INVNET_ASSIGN_OR_RETURN(ExactMaps grid,
                              EstimateAll(client, first, data.n, data.y_grid->points));
      data.references.posterior_mean_grid = std::move(grid.posterior_mean);
      data.references.map_grid = std::move(grid.map);
      data.references.pseudo_inverse_grid = std::move(grid.pseudo_inverse);
    }
  }
  if (data.x_grid.has_value()) {
    if (data.m == 2) {
      INVNET_ASSIGN_OR_RETURN(data.exact_forward_grid,
                              ForwardAll(client, first, data.x_grid->points,
                                         v1::FORWARD_MAP_OPERATOR, data.m));
    }
    INVNET_ASSIGN_OR_RETURN(data.exact_normal_grid,
                            ForwardAll(client, first, data.x_grid->points,
                                       v1::FORWARD_MAP_NORMAL_OPERATOR, data.n));
  }

  for (size_t i = 0; i < outcome.trained.size(); ++i) {
    const TrainedModel& trained = outcome.trained[i];
    ModelResult result;
    result.trained = trained;
    result.score = scores->models(static_cast<int>(i));
    if (i == 0) {
      result.description = data.problem_source;
    } else {
      INVNET_ASSIGN_OR_RETURN(result.description, Describe(client, trained));
    }
    INVNET_ASSIGN_OR_RETURN(result.reconstructions,
                            ReconstructAll(client, trained, data.n, data.y));
    if (data.x_grid.has_value()) {
      INVNET_ASSIGN_OR_RETURN(result.forward_grid_image,
                              ForwardAll(client, trained, data.x_grid->points,
                                         v1::FORWARD_MAP_NETWORK, data.n));
    }
    if (data.y_grid.has_value()) {
      INVNET_ASSIGN_OR_RETURN(result.inverse_grid_image,
                              ReconstructAll(client, trained, data.n, data.y_grid->points));
    }
    data.models.push_back(std::move(result));
  }
  return data;
}

}  // namespace invnet::client
