#ifndef INVNET_CLIENT_REPORT_H_
#define INVNET_CLIENT_REPORT_H_

// The experiment report: numbers and figures from an ExperimentData (client/experiment.h),
// written as a folder that opens in any browser or Markdown viewer:
//
//   report.md     the problem, the results table, how each number is defined, and every figure
//                 embedded by a relative link with a caption saying what to look at
//   results.csv   the table's numbers at full precision, one row per estimator
//   grids.svg     (n = 2) a regular grid through each phi and the exact forward maps, and a grid
//                 of measurements through each phi^-1 and the exact PM and MAP maps
//   samples.svg   (n = 2) test signals, measurements and every estimator's reconstructions
//   signals.svg   (n > 2) a few test signals with their measurement and reconstructions
//   curves.svg    training loss and validation MSE against the step, per loss
//
// Every loss has one colour in every figure (ExperimentLosses()). Pure functions of their
// arguments except WriteReport, which writes files (thread-safe for distinct directories).

#include <limits>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "client/experiment.h"
#include "invnet/v1/reconstruction_service.pb.h"

namespace invnet::client {

constexpr double kNotApplicable = std::numeric_limits<double>::quiet_NaN();

// Every metric of `score` NaN ("does not apply"): what a row starts from.
v1::EstimatorScore NotApplicableScore();

// One row of the results: a reference estimator or a trained network, with the numbers the
// server's Evaluate computed (EstimatorScore; NaN where a metric does not apply, as a
// reference's forward error or ratios without references).
struct ResultRow {
  std::string label;  // "exact posterior mean", "log-det regularised"
  std::string key;    // "posterior_mean", "map", "wiener", "pseudo_inverse", or the loss key
  bool network = false;
  std::string target_space;    // networks: "measurement" or "normal"
  uint64_t training_seed = 0;  // networks
  // metrics["train_seconds"] of the model version.
  double train_seconds = kNotApplicable;
  // Networks: score.model and score.version name the model.
  v1::EstimatorScore score = NotApplicableScore();
};

// The rows: the references (when available: posterior mean, MAP, Wiener, A^+ y), then the
// networks in the experiment's order.
std::vector<ResultRow> ResultRows(const ExperimentData& data);
// The reference rows of Evaluate's scores, in that order, each with its label.
std::vector<ResultRow> ReferenceRows(const std::vector<v1::EstimatorScore>& references);

// Mean and standard error (sample standard deviation / sqrt(count); NaN for one value) of
// `values`, NaN entries skipped.
struct MeanAndError {
  double mean = kNotApplicable;
  double standard_error = kNotApplicable;
  int64_t count = 0;
};
MeanAndError MeanWithError(const std::vector<double>& values);

// One loss over an experiment's training seeds (ExperimentConfig::training_seeds > 1).
struct SeedSummaryRow {
  std::string label;  // the loss's label, "log-det regularised"
  std::string key;    // the loss key
  MeanAndError mse, mse_ratio_to_pm, rms_to_map, forward_error;
  // Against the loss with the lowest mean MSE: "best", "within error of the best (+0.002 +-
  // 0.004)" when the difference of the means is below twice its standard error
  // (sqrt(SE_a^2 + SE_b^2)), else "+0.012 +- 0.004". The runs of different losses are
  // independent, so the errors add in quadrature.
  std::string versus_best;
};
// The network rows grouped by loss, in the order the losses first appear.
std::vector<SeedSummaryRow> SummarizeOverSeeds(const std::vector<ResultRow>& rows);
// The summary as an aligned Markdown table: estimator, runs, MSE, x PM, RMS to MAP and forward
// error as "mean ± SE", and the comparison with the best.
std::string SeedSummaryMarkdownTable(const std::vector<SeedSummaryRow>& summary);

// The results as an aligned Markdown table (header, separator, one line per row), the table of
// report.md and of the command's output.
std::string ResultsMarkdownTable(const std::vector<ResultRow>& rows);
// The results as CSV with a header line; full precision (%.9g), empty cells for NaN.
std::string ResultsCsv(const std::vector<ResultRow>& rows);

// The figures as SVG documents. The 2-D sheets expect data.n == 2 (GridSheet also draws the
// inverse sections only when data.y_grid is set); SignalsSheet shows up to `count` test pairs.
std::string GridSheet(const ExperimentData& data);
std::string SamplesSheet(const ExperimentData& data, int64_t max_points);
std::string CurvesSheet(const ExperimentData& data);
std::string SignalsSheet(const ExperimentData& data, int64_t count);

// Scatter panels plot the first min(N, kMaxScatterPoints) test pairs.
constexpr int64_t kMaxScatterPoints = kFigurePairs;
// The signal sheet shows this many test pairs.
constexpr int64_t kSignalPanels = 4;

struct ReportFiles {
  std::string directory;
  std::string report;              // <directory>/report.md
  std::vector<std::string> files;  // every file written, report.md first
  // ResultsMarkdownTable of the rows, then (training_seeds > 1) the SeedSummaryMarkdownTable.
  std::string table;
};

// Creates `directory` (and its parents) when missing and writes the report into it, each file
// atomically (replacing an earlier report's files of the same names). Errors from the file
// system (PERMISSION_DENIED, NOT_FOUND, ...), with the path in the message.
absl::StatusOr<ReportFiles> WriteReport(const ExperimentData& data, const std::string& directory);

}  // namespace invnet::client

#endif  // INVNET_CLIENT_REPORT_H_
