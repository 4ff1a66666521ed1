#ifndef INVNET_CLIENT_EXPERIMENT_H_
#define INVNET_CLIENT_EXPERIMENT_H_

// `invnet experiment`: the paper's study (models/README.md section 5) as a client-side procedure
// that uses only the server's RPCs.
//
//   1. TrainAll: one training job per loss (per loss and training seed with training_seeds > 1),
//      named <prefix>-<loss> (<prefix>-<loss>-s<seed>), submitted concurrently. The
//      server runs --max_jobs of them and queues the rest; only when its queue is full too
//      (RESOURCE_EXHAUSTED) is a Train submitted again, when one of ours finishes (or, when the
//      server is full of someone else's jobs, every ExperimentConfig::retry_interval). Every job
//      is watched to its end.
//   2. Evaluate: the numbers come from the server's Evaluate RPC, which scores every model and
//      the exact references on the SAME held-out pairs (config.test_pairs, config.seed) and
//      with the network's own posterior std where its loss and space define one. The figures
//      draw the first kFigurePairs of those same pairs (DrawTestPairs with the same count and
//      seed), each model's Reconstruct of them, the exact posterior mean and MAP of them
//      (Estimate; a FAILED_PRECONDITION answer, as for dataset problems, means "not
//      available", not an error), and for 2-D problems the images of regular grids under phi,
//      phi^-1 and the exact maps (Forward with map OPERATOR / NORMAL_OPERATOR for A x and
//      A^T A x). Nothing is computed here that the server computes.
//   3. client/report.h turns the ExperimentData into report.md, results.csv and SVG figures.
//
// Thread-safety: TrainAll starts one watcher thread per running job and joins them all before
// it returns; the MultiJobProgress it is given is used only from the calling thread. Everything
// else is plain data and functions of their arguments.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "client/client.h"
#include "client/dense_tensor.h"
#include "client/progress.h"
#include "invnet/v1/model.pb.h"
#include "invnet/v1/training_service.pb.h"

namespace invnet::client {

// What the report calls each loss, and its colour in every figure.
struct LossInfo {
  v1::Loss loss;
  // LossName(loss): the --losses word, the model-name suffix and results.csv's key: "log-det".
  const char* key;
  const char* label;        // "log-det regularised"
  const char* short_label;  // "log-det", for panel titles
  const char* color;        // "#0072B2"
};
// The four losses in the report's order: approximation, log-det, divergence, reconstruction.
const std::vector<LossInfo>& ExperimentLosses();
// Precondition: `loss` is one of the four.
const LossInfo& InfoFor(v1::Loss loss);
// "a,b" -> losses, in the order given, each word as ParseLossName() reads it (log-det, logdet,
// log_det, LOSS_LOG_DET, ...). INVALID_ARGUMENT naming the bad word for an unknown loss, a
// repeated one or an empty list.
absl::StatusOr<std::vector<v1::Loss>> ParseLossList(absl::string_view list);

struct ExperimentConfig {
  // The problem, architecture and schedule of every model: preset and/or problem, overrides.
  // model_name and training.loss are set per job by TrainAll.
  v1::TrainRequest base;
  // Names the problem in titles and file names: the preset, or the spec file's name.
  std::string label = "bimodal2d";
  // Models are named <name_prefix>-<loss key> (with training_seeds > 1: -s<training seed>).
  std::string name_prefix = "experiment";
  std::vector<v1::Loss> losses;
  // Each loss is trained this many times, run i with training seed base.training.seed + i and
  // architecture (initialisation) seed base.architecture.seed + i, and the report gives each
  // loss's mean +- standard error over the runs (client/report.h).
  int64_t training_seeds = 1;
  // Held-out pairs, and the seed DrawTestPairs draws them with.
  int64_t test_pairs = 5000;
  uint64_t seed = 0;
  // The server's address, for the report.
  std::string server;
  // How often to retry a Train refused with RESOURCE_EXHAUSTED while none of our jobs runs.
  absl::Duration retry_interval = absl::Seconds(1);
};

// The training seed of the `index`-th of config.training_seeds runs of a loss.
uint64_t TrainingSeedFor(const ExperimentConfig& config, int64_t index);
// <prefix>-<loss key>, or <prefix>-<loss key>-s<training seed> with training_seeds > 1.
std::string ModelNameFor(const ExperimentConfig& config, v1::Loss loss, uint64_t training_seed);

// One training job of an experiment.
struct PlannedJob {
  v1::Loss loss = v1::LOSS_UNSPECIFIED;
  uint64_t training_seed = 0;
  std::string model;
};
// The jobs TrainAll submits, in order: for each loss of config.losses, its training seeds.
std::vector<PlannedJob> PlanJobs(const ExperimentConfig& config);

struct TrainedModel {
  v1::Loss loss = v1::LOSS_UNSPECIFIED;
  uint64_t training_seed = 0;
  std::string model;
  int64_t version = 0;
  std::string job_id;
};

struct FailedTraining {
  v1::Loss loss = v1::LOSS_UNSPECIFIED;
  uint64_t training_seed = 0;
  std::string model;
  std::string job_id;
  std::string error;  // "failed: loss became NaN at step 10"
};

struct TrainingOutcome {
  std::vector<TrainedModel> trained;  // in PlanJobs order
  std::vector<FailedTraining> failed;
};

// Trains the models of PlanJobs(config) (see the file comment), showing progress on `progress`
// (one line per job, in order; labels are the model names). A job that ends FAILED or
// CANCELLED is listed in `failed`; the others go on. Errors: a Train refused with anything but
// RESOURCE_EXHAUSTED, or a watch that fails (the server went away), returned after cancelling
// the jobs this call started and waiting for their watchers; the message names the model.
absl::StatusOr<TrainingOutcome> TrainAll(const InvnetClient& client, const ExperimentConfig& config,
                                         MultiJobProgress* progress);

// A regular grid of 2-D points drawn as 2 * lines polylines of `points_per_line` points each:
// rows [k * points_per_line, (k + 1) * points_per_line) of `points` are line k; the first
// `lines` lines run along the first coordinate (second coordinate constant), the rest along
// the second.
struct Grid {
  int64_t lines = 0;
  int64_t points_per_line = 0;
  DenseTensor points;  // [2 * lines * points_per_line, 2]
};
// The grid over [x_lo, x_hi] x [y_lo, y_hi]. Precondition: lines >= 2, points_per_line >= 2.
Grid MakeGrid(double x_lo, double x_hi, double y_lo, double y_hi, int64_t lines,
              int64_t points_per_line);

// The figures draw the first this many test pairs (the scatter panels; the signal panels draw
// fewer).
constexpr int64_t kFigurePairs = 500;

struct ModelResult {
  TrainedModel trained;
  // GetModel's description of the evaluated version (problem, training incl. target_space,
  // metrics incl. train_seconds, curves).
  v1::ModelVersion description;
  // The server's scores of this model on all test pairs (Evaluate), incl. its posterior std's
  // method or why it has none.
  v1::EstimatorScore score;
  // Reconstruct(y) of the figure pairs, [ExperimentData::x.rows(), n].
  DenseTensor reconstructions;
  // 2-D problems: phi(x_grid) (n = 2) and phi^-1(y_grid) (m = 2); empty otherwise.
  DenseTensor forward_grid_image;
  DenseTensor inverse_grid_image;
};

struct ReferenceResults {
  bool available = false;
  // Why not (the server's message), when not available.
  std::string unavailable_reason;
  // The server's scores of the exact posterior mean, MAP, Wiener and A^+ y on all test pairs.
  std::vector<v1::EstimatorScore> scores;
  DenseTensor posterior_mean, map;  // on the figure pairs
  // On y_grid (m = 2 and n = 2): the exact maps y -> PM, MAP and A^+ y.
  DenseTensor posterior_mean_grid, map_grid, pseudo_inverse_grid;
};

struct ExperimentData {
  ExperimentConfig config;
  // The first model's description: the problem every model shares.
  v1::ModelVersion problem_source;
  int64_t n = 0;  // signal dimension
  int64_t m = 0;  // measurement dimension
  // The first min(config.test_pairs, kFigurePairs) test pairs, for the figures: [rows, n] and
  // [rows, m].
  DenseTensor x;
  DenseTensor y;
  // 2-D problems (n = 2 / m = 2): the grids and the exact forward maps on x_grid (A x_grid when
  // m = 2; A^T A x_grid).
  std::optional<Grid> x_grid;
  std::optional<Grid> y_grid;
  DenseTensor exact_forward_grid;
  DenseTensor exact_normal_grid;
  std::vector<ModelResult> models;  // in PlanJobs order (of those that trained)
  ReferenceResults references;
  std::vector<FailedTraining> failed;
};

// Gathers everything the report needs (see the file comment). Errors: INVALID_ARGUMENT when
// outcome.trained is empty; the server's error of any RPC except Estimate's
// FAILED_PRECONDITION; INVALID_ARGUMENT for an answer of the wrong shape or count.
absl::StatusOr<ExperimentData> Evaluate(const InvnetClient& client, const ExperimentConfig& config,
                                        const TrainingOutcome& outcome);

}  // namespace invnet::client

#endif  // INVNET_CLIENT_EXPERIMENT_H_
