#include "client/report.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/format.h"
#include "client/plot.h"
#include "client/tensor_io.h"
#include "proto/base/file_io.h"
#include "proto/base/status_macros.h"

namespace invnet::client {
namespace {

using plot::Panel;
using plot::Point;
using plot::Series;
using plot::Sheet;

// Reference estimators: colours and dashes shared by every figure (the losses' colours are in
// ExperimentLosses()).
constexpr char kTruthColor[] = "#000000";
constexpr char kMeasurementColor[] = "#777777";
constexpr char kPmColor[] = "#000000";
constexpr char kPmDash[] = "6,3";
constexpr char kMapColor[] = "#D55E00";
constexpr char kMapDash[] = "2,2";
constexpr char kPinvColor[] = "#999999";
constexpr char kWienerColor[] = "#56B4E9";
constexpr char kGridColor[] = "#555555";

// Axis labels of reconstructions.
constexpr char kHat1[] = "x̂₁";
constexpr char kHat2[] = "x̂₂";

bool Has(double v) { return !std::isnan(v); }

// ---------------------------------------------------------------------------------------------
// Numbers.

std::string Metric4(double v) {
  if (!Has(v)) return "";
  if (v == 0) return "0";
  const double a = std::abs(v);
  if (a >= 1e5 || a < 1e-3) return absl::StrFormat("%.3e", v);
  return absl::StrFormat("%.4f", v);
}

std::string Short3(double v) {
  if (!Has(v)) return "";
  if (v == 0) return "0";
  const double a = std::abs(v);
  if (a >= 1e5 || a < 1e-3) return absl::StrFormat("%.2e", v);
  return absl::StrFormat("%.3f", v);
}

std::string Full(double v) { return Has(v) ? absl::StrFormat("%.9g", v) : ""; }

std::string CsvField(const std::string& text) {
  if (text.find_first_of(",\"\n") == std::string::npos) return text;
  return absl::StrCat("\"", absl::StrReplaceAll(text, {{"\"", "\"\""}}), "\"");
}

double Metric(const v1::ModelVersion& version, const std::string& name) {
  auto it = version.metrics().find(name);
  return it == version.metrics().end() ? kNotApplicable : it->second;
}


// ---------------------------------------------------------------------------------------------
// Figures.

std::vector<Point> ToPoints(const DenseTensor& m, int64_t limit) {
  std::vector<Point> points;
  const int64_t rows = std::min(m.rows(), limit);
  for (int64_t r = 0; r < rows; ++r) points.push_back({m.at(r, 0), m.at(r, 1)});
  return points;
}

// The polylines of one family of a grid (or of its image): lines [first, first + grid.lines).
std::vector<std::vector<Point>> GridLines(const Grid& grid, const DenseTensor& image,
                                          bool first_family) {
  std::vector<std::vector<Point>> lines;
  const int64_t offset = first_family ? 0 : grid.lines;
  for (int64_t k = 0; k < grid.lines; ++k) {
    std::vector<Point> line;
    for (int64_t j = 0; j < grid.points_per_line; ++j) {
      const int64_t row = (offset + k) * grid.points_per_line + j;
      line.push_back({image.at(row, 0), image.at(row, 1)});
    }
    lines.push_back(std::move(line));
  }
  return lines;
}

// A grid panel: both families in one colour, the second fainter so the two stay apart.
Panel GridPanel(const std::string& id, const std::string& title, const std::string& x_label,
                const std::string& y_label, const Grid& grid, const DenseTensor& image,
                const std::string& color) {
  Panel panel;
  panel.id = id;
  panel.title = title;
  panel.x_label = x_label;
  panel.y_label = y_label;
  panel.equal_aspect = true;
  Series first;
  first.id = "lines-1";
  first.color = color;
  first.width = 1.1;
  first.lines = GridLines(grid, image, true);
  Series second = first;
  second.id = "lines-2";
  second.opacity = 0.45;
  second.lines = GridLines(grid, image, false);
  panel.series = {std::move(first), std::move(second)};
  return panel;
}

// One shared range for a group of panels, holding all their data.
void ShareRange(std::vector<Panel*> panels, double quantile = 0) {
  std::vector<double> xs, ys;
  for (const Panel* p : panels) {
    for (const Series& s : p->series) {
      for (const auto& line : s.lines) {
        for (const Point& pt : line) {
          xs.push_back(pt.x);
          ys.push_back(pt.y);
        }
      }
      for (const Point& pt : s.points) {
        xs.push_back(pt.x);
        ys.push_back(pt.y);
      }
    }
  }
  auto trim = [quantile](std::vector<double>& v) {
    v.erase(std::remove_if(v.begin(), v.end(), [](double d) { return !std::isfinite(d); }),
            v.end());
    if (quantile <= 0 || v.size() < 10) return;
    std::sort(v.begin(), v.end());
    const size_t lo = static_cast<size_t>(quantile * static_cast<double>(v.size() - 1));
    const size_t hi = v.size() - 1 - lo;
    v = {v[lo], v[hi]};
  };
  trim(xs);
  trim(ys);
  const std::optional<plot::Range> x = plot::RangeOf(xs), y = plot::RangeOf(ys);
  for (Panel* p : panels) {
    p->x_range = x;
    p->y_range = y;
  }
}

std::string TargetName(const ModelResult& m) {
  return m.description.training().target_space() == v1::TARGET_SPACE_NORMAL ? "AᵀA x" : "A x";
}

bool AnyNormal(const ExperimentData& data) {
  for (const ModelResult& m : data.models) {
    if (m.description.training().target_space() == v1::TARGET_SPACE_NORMAL) return true;
  }
  return false;
}

std::vector<plot::LegendEntry> LossLegend(const ExperimentData& data) {
  std::vector<plot::LegendEntry> legend;
  for (const ModelResult& m : data.models) {
    const LossInfo& info = InfoFor(m.trained.loss);
    legend.push_back({info.label, info.color, "", false});
  }
  return legend;
}

int64_t ScatterCount(const ExperimentData& data, int64_t max_points) {
  return std::min(data.x.rows(), max_points);
}

Panel ScatterPanel(const std::string& id, const std::string& title, const std::string& x_label,
                   const std::string& y_label, const DenseTensor& points, int64_t count,
                   const std::string& color) {
  Panel panel;
  panel.id = id;
  panel.title = title;
  panel.x_label = x_label;
  panel.y_label = y_label;
  panel.equal_aspect = true;
  panel.attributes = {{"data-points", static_cast<long long>(count)}};  // NOLINT(runtime/int)
  Series s;
  s.id = "points";
  s.kind = Series::Kind::kPoints;
  s.color = color;
  s.radius = 1.6;
  s.opacity = 0.55;
  s.points = ToPoints(points, count);
  panel.series.push_back(std::move(s));
  return panel;
}

const v1::Curve* FindCurve(const v1::ModelVersion& version, const std::string& name) {
  for (const v1::Curve& c : version.curves()) {
    if (c.name() == name) return &c;
  }
  return nullptr;
}

// A y range that ignores the first 10% of the steps (the early transient would flatten
// everything else), widened to hold `extra` values.
std::optional<plot::Range> LateRange(const std::vector<Series>& series,
                                     const std::vector<double>& extra) {
  double max_step = 0;
  for (const Series& s : series) {
    for (const auto& line : s.lines) {
      for (const Point& p : line) max_step = std::max(max_step, p.x);
    }
  }
  std::vector<double> late = extra, all = extra;
  for (const Series& s : series) {
    for (const auto& line : s.lines) {
      for (const Point& p : line) {
        all.push_back(p.y);
        if (p.x >= 0.1 * max_step) late.push_back(p.y);
      }
    }
  }
  return plot::RangeOf(late.size() >= 2 ? late : all, 0.08);
}

Panel CurvePanel(const ExperimentData& data, const std::string& id, const std::string& title,
                 const std::string& x_curve, const std::string& y_curve, const std::string& y_label,
                 const std::vector<double>& reference_levels) {
  Panel panel;
  panel.id = id;
  panel.title = title;
  panel.x_label = "step";
  panel.y_label = y_label;
  double max_step = 1;
  for (const ModelResult& m : data.models) {
    const v1::Curve* xs = FindCurve(m.description, x_curve);
    const v1::Curve* ys = FindCurve(m.description, y_curve);
    if (xs == nullptr || ys == nullptr) continue;
    const LossInfo& info = InfoFor(m.trained.loss);
    Series s;
    s.id = info.key;
    s.color = info.color;
    s.width = 1.6;
    std::vector<Point> line;
    for (int i = 0; i < std::min(xs->values_size(), ys->values_size()); ++i) {
      line.push_back({xs->values(i), ys->values(i)});
      max_step = std::max(max_step, xs->values(i));
    }
    s.lines.push_back(std::move(line));
    panel.series.push_back(std::move(s));
  }
  for (double level : reference_levels) {
    Series s;
    s.id = "posterior-mean";
    s.color = kPmColor;
    s.dash = kPmDash;
    s.width = 1.2;
    s.lines.push_back({{0, level}, {max_step, level}});
    panel.series.push_back(std::move(s));
  }
  panel.x_range = plot::Range{0, max_step};
  panel.y_range = LateRange(panel.series, reference_levels);
  return panel;
}

// ---------------------------------------------------------------------------------------------
// report.md.

// "A = [[0.9, 0.2], [0.1, 0.5]]" for a small dense operator, else its summary.
std::string OperatorText(const v1::Operator& op) {
  const v1::Tensor& matrix = op.dense().matrix();
  if (op.has_dense() && matrix.shape_size() == 2 && matrix.values_size() <= 16 &&
      matrix.shape(0) * matrix.shape(1) == matrix.values_size()) {
    std::vector<std::string> rows;
    for (int64_t r = 0; r < matrix.shape(0); ++r) {
      std::vector<std::string> cells;
      for (int64_t c = 0; c < matrix.shape(1); ++c) {
        cells.push_back(FormatNumber(matrix.values(static_cast<int>(r * matrix.shape(1) + c))));
      }
      rows.push_back(absl::StrCat("[", absl::StrJoin(cells, ", "), "]"));
    }
    return absl::StrCat("A = [", absl::StrJoin(rows, ", "), "]");
  }
  return absl::StrCat("A ", OperatorSummary(op));
}

std::string ArchitectureText(const v1::Architecture& a) {
  return absl::StrCat(a.num_blocks(), " blocks × ", a.layers_per_block(), " layers, width ",
                      a.hidden_width(), ", ", ActivationName(a.activation()),
                      ", Lipschitz bound c = ", FormatNumber(a.lipschitz_coeff()));
}

std::string ModelsTable(const ExperimentData& data) {
  std::string text =
      "| loss | model | version | target space | α | steps | batch | learning rate | train time "
      "|\n|---|---|---:|---|---:|---:|---:|---:|---:|\n";
  for (const ModelResult& m : data.models) {
    const v1::Training& t = m.description.training();
    const double seconds = Metric(m.description, "train_seconds");
    absl::StrAppend(&text, "| ", InfoFor(m.trained.loss).label, " | `", m.trained.model, "` | ",
                    m.trained.version, " | ", TargetSpaceName(t.target_space()), " | ",
                    FormatNumber(t.loss_weight()), " | ", t.steps(), " | ", t.batch_size(), " | ",
                    FormatNumber(t.learning_rate()), " | ",
                    Has(seconds) ? absl::StrFormat("%.1f s", seconds) : "", " |\n");
  }
  return text;
}

// "3. Training curves" when two figures precede it: the one place figures are numbered.
std::string Numbered(const std::vector<std::string>& figures_so_far, absl::string_view title) {
  return absl::StrCat(figures_so_far.size() + 1, ". ", title);
}

std::string Figure(const std::string& heading, const std::string& file, const std::string& alt,
                   const std::string& caption) {
  return absl::StrCat("### ", heading, "\n\n![", alt, "](", file, ")\n\n", caption, "\n\n");
}

std::string ReportMarkdown(const ExperimentData& data, const std::vector<ResultRow>& rows,
                           const std::vector<std::string>& figures) {
  const ExperimentConfig& config = data.config;
  const v1::ModelVersion& source = data.problem_source;
  const v1::Problem& problem = source.problem();
  std::string md = absl::StrCat("# invnet experiment: ", config.label, "\n\n");
  absl::StrAppend(
      &md,
      "One invertible residual network φ ≈ A per training loss, all on the same problem, "
      "compared on the same held-out test pairs with each other and with the exact Bayesian "
      "estimators (Heilenkötter, *How regularization terms make invertible neural networks "
      "Bayesian point estimators*, arXiv 2510.26704).\n\n");
  absl::StrAppend(&md, "- **Problem**: y = A x + δ η with ", OperatorText(problem.operator_()),
                  ", δ = ", FormatNumber(problem.noise_level()), ", signals from a ",
                  SignalsSummary(problem), "; n = ", data.n, ", m = ", data.m);
  if (!source.preset().empty()) absl::StrAppend(&md, " (preset `", source.preset(), "`)");
  absl::StrAppend(&md, ".\n- **Networks**: ", ArchitectureText(source.architecture()), ".\n");
  absl::StrAppend(&md, "- **Test pairs**: ", config.test_pairs,
                  " held-out pairs (x, y) drawn by the server (the pairs of `",
                  data.models.front().trained.model, "`, seed ", config.seed,
                  "); every estimator is scored on the same pairs, by the server (Evaluate).\n");
  absl::StrAppend(
      &md, "- **Server**: ", config.server.empty() ? "-" : config.server, "; report written ",
      absl::FormatTime("%Y-%m-%d %H:%M:%S UTC", absl::Now(), absl::UTCTimeZone()), ".\n\n");

  if (config.training_seeds > 1) {
    absl::StrAppend(
        &md, "## Over ", config.training_seeds, " training seeds\n\n",
        "Every loss was trained ", config.training_seeds,
        " times (training and initialisation seeds ", TrainingSeedFor(config, 0), " to ",
        TrainingSeedFor(config, config.training_seeds - 1),
        "), each run evaluated on the same test pairs. Each cell is the mean over the runs ± its "
        "standard error (standard deviation / √runs). **MSE vs the best** compares each loss's "
        "mean MSE with the lowest one; a difference below twice its standard error is reported "
        "as *within error*: those losses are not told apart by this experiment.\n\n",
        SeedSummaryMarkdownTable(SummarizeOverSeeds(rows)), "\n");
  }
  absl::StrAppend(&md, "## Results\n\n", ResultsMarkdownTable(rows), "\n");
  std::vector<std::string> normal_losses;
  for (const ModelResult& m : data.models) {
    if (m.description.training().target_space() == v1::TARGET_SPACE_NORMAL) {
      normal_losses.push_back(InfoFor(m.trained.loss).label);
    }
  }
  absl::StrAppend(
      &md, "**MSE** = mean over the test pairs of ‖x̂ − x‖². ",
      data.references.available
          ? "**x PM** = MSE / the exact posterior mean's MSE (the Bayes risk, so 1 is optimal). "
            "**RMS to PM** and **RMS to MAP** = √(mean ‖x̂ − x_PM‖²) and √(mean ‖x̂ − x_MAP‖²). "
          : "",
      "**forward error** = √(mean ‖φ(x) − t‖²), t = A x for networks in measurement space and "
      "t = AᵀA x for networks in normal-equation space (",
      normal_losses.empty() ? "none here"
                            : absl::StrCat("here: ", absl::StrJoin(normal_losses, ", ")),
      "). **converged** = share of test samples whose fixed-point inverse met its tolerance; "
      "**iterations** = mean fixed-point iterations per sample (all blocks); **train time** = "
      "the job's training time on the server. The Wiener row is the linear MMSE (Tikhonov) "
      "estimator with the prior's mean and covariance. Full precision: "
      "[results.csv](results.csv).\n\n");
  std::vector<std::string> spread_methods;
  for (const ModelResult& m : data.models) {
    if (!m.score.posterior_std_method().empty()) {
      spread_methods.push_back(
          absl::StrCat(InfoFor(m.trained.loss).label, ": ", m.score.posterior_std_method()));
    }
  }
  if (!spread_methods.empty()) {
    absl::StrAppend(
        &md, "**posterior std** = mean over the test pairs and components of the posterior "
             "standard deviation: for the exact posterior mean's row the exact one (√diag "
             "Cov[x|y]), for a network the one its own Jacobian at x̂ implies (Reconstruct with "
             "posterior_std; ",
        absl::StrJoin(spread_methods, "; "),
        "; laplace-divergence = δ² J_φ(x̂)⁻¹, tweedie-log-det = δ² J_φ(x̂)⁻¹ A⁻ᵀ). "
        "**std / exact std** = the ratio of the network's std to the exact one per sample and "
        "component: median [10%, 90% quantiles] (mean in results.csv); NaN = samples where "
        "the network's curvature is not positive definite, so it implies no Gaussian "
        "approximation. Models of other losses or spaces have none.\n\n");
  }
  if (!data.references.available) {
    absl::StrAppend(&md,
                    "**No exact references** for this problem (the server: ",
                    data.references.unavailable_reason,
                    "), so the posterior mean, MAP, Wiener and A⁺y rows and the ratios to them "
                    "are omitted.\n\n");
  }
  if (!data.failed.empty()) {
    absl::StrAppend(&md, "**Training failed** (not evaluated):\n\n");
    for (const FailedTraining& f : data.failed) {
      absl::StrAppend(&md, "- ", InfoFor(f.loss).label, " (`", f.model, "`, job ", f.job_id,
                      "): ", f.error, "\n");
    }
    absl::StrAppend(&md, "\n");
  }
  absl::StrAppend(&md, "### Models\n\n", ModelsTable(data), "\n");

  absl::StrAppend(&md, "## Figures\n\nEach loss has the same colour in every figure.",
                  config.training_seeds > 1
                      ? absl::StrCat(" The figures show each loss's run with training seed ",
                                     TrainingSeedFor(config, 0), ".")
                      : std::string(),
                  "\n\n");
  for (const std::string& figure : figures) absl::StrAppend(&md, figure);
  return md;
}

// `cells` (a header line, then rows) as a Markdown table: columns padded to a common width, the
// first left-aligned, the others right-aligned.
std::string AlignedTable(const std::vector<std::vector<std::string>>& cells) {
  std::vector<size_t> widths;
  // Display width: count UTF-8 code points, not bytes.
  auto width = [](const std::string& s) {
    size_t w = 0;
    for (unsigned char ch : s) w += (ch & 0xC0) != 0x80 ? 1 : 0;
    return w;
  };
  widths.assign(cells[0].size(), 0);
  for (const auto& line : cells) {
    for (size_t c = 0; c < line.size(); ++c) widths[c] = std::max(widths[c], width(line[c]));
  }
  std::string text;
  for (size_t r = 0; r < cells.size(); ++r) {
    std::string line = "|";
    for (size_t c = 0; c < cells[r].size(); ++c) {
      const std::string pad(widths[c] - width(cells[r][c]), ' ');
      absl::StrAppend(&line, " ", c == 0 ? cells[r][c] + pad : pad + cells[r][c], " |");
    }
    absl::StrAppend(&text, line, "\n");
    if (r == 0) {
      std::string separator = "|";
      for (size_t c = 0; c < widths.size(); ++c) {
        absl::StrAppend(
            &separator,
            c == 0 ? std::string(widths[c] + 2, '-') : std::string(widths[c] + 1, '-') + ":", "|");
      }
      absl::StrAppend(&text, separator, "\n");
    }
  }
  return text;
}

}  // namespace

v1::EstimatorScore NotApplicableScore() {
  v1::EstimatorScore score;
  for (void (v1::EstimatorScore::*set)(double) :
       {&v1::EstimatorScore::set_mse, &v1::EstimatorScore::set_mse_ratio_to_pm,
        &v1::EstimatorScore::set_rms_to_pm, &v1::EstimatorScore::set_rms_to_map,
        &v1::EstimatorScore::set_forward_error, &v1::EstimatorScore::set_converged_fraction,
        &v1::EstimatorScore::set_mean_iterations, &v1::EstimatorScore::set_mean_posterior_std,
        &v1::EstimatorScore::set_std_ratio_mean, &v1::EstimatorScore::set_std_ratio_median,
        &v1::EstimatorScore::set_std_ratio_q10, &v1::EstimatorScore::set_std_ratio_q90,
        &v1::EstimatorScore::set_std_undefined_fraction}) {
    (score.*set)(kNotApplicable);
  }
  return score;
}

std::vector<ResultRow> ReferenceRows(const std::vector<v1::EstimatorScore>& references) {
  static const std::pair<const char*, const char*> kReferenceLabels[] = {
      {"posterior_mean", "exact posterior mean"},
      {"map", "exact MAP"},
      {"wiener", "Wiener (Tikhonov)"},
      {"pseudo_inverse", "A⁺y (pseudo-inverse)"}};
  std::vector<ResultRow> rows;
  for (const auto& [key, label] : kReferenceLabels) {
    for (const v1::EstimatorScore& score : references) {
      if (score.estimator() != key) continue;
      ResultRow row;
      row.label = label;
      row.key = key;
      row.score = score;
      rows.push_back(std::move(row));
    }
  }
  return rows;
}

std::vector<ResultRow> ResultRows(const ExperimentData& data) {
  std::vector<ResultRow> rows = ReferenceRows(data.references.scores);
  for (const ModelResult& m : data.models) {
    const LossInfo& info = InfoFor(m.trained.loss);
    ResultRow row;
    row.label = info.label;
    if (data.config.training_seeds > 1) {
      absl::StrAppend(&row.label, ", seed ", m.trained.training_seed);
    }
    row.key = info.key;
    row.training_seed = m.trained.training_seed;
    row.network = true;
    row.target_space = TargetSpaceName(m.description.training().target_space());
    row.train_seconds = Metric(m.description, "train_seconds");
    row.score = m.score;
    rows.push_back(std::move(row));
  }
  return rows;
}

std::string ResultsMarkdownTable(const std::vector<ResultRow>& rows) {
  struct Column {
    const char* header;
    std::string (*cell)(const ResultRow&);
  };
  static const Column kColumns[] = {
      {"estimator", [](const ResultRow& r) { return r.label; }},
      {"MSE", [](const ResultRow& r) { return Metric4(r.score.mse()); }},
      {"x PM", [](const ResultRow& r) { return Short3(r.score.mse_ratio_to_pm()); }},
      {"RMS to PM", [](const ResultRow& r) { return Short3(r.score.rms_to_pm()); }},
      {"RMS to MAP", [](const ResultRow& r) { return Short3(r.score.rms_to_map()); }},
      {"forward error", [](const ResultRow& r) { return Metric4(r.score.forward_error()); }},
      {"converged",
       [](const ResultRow& r) {
         return Has(r.score.converged_fraction())
                    ? absl::StrFormat("%.1f%%", 100 * r.score.converged_fraction())
                                          : std::string();
       }},
      {"iterations",
       [](const ResultRow& r) {
         return Has(r.score.mean_iterations())
                    ? absl::StrFormat("%.1f", r.score.mean_iterations())
                    : std::string();
       }},
      {"train time",
       [](const ResultRow& r) {
         return Has(r.train_seconds) ? absl::StrFormat("%.1f s", r.train_seconds) : std::string();
       }},
      {"posterior std", [](const ResultRow& r) { return Metric4(r.score.mean_posterior_std()); }},
      {"std / exact std",
       [](const ResultRow& r) {
         const v1::EstimatorScore& s = r.score;
         if (!Has(s.std_ratio_median())) return std::string();
         std::string cell = absl::StrCat(Short3(s.std_ratio_median()), " [",
                                         Short3(s.std_ratio_q10()), ", ", Short3(s.std_ratio_q90()),
                                         "]");
         if (s.std_undefined_fraction() > 0) {
           absl::StrAppend(&cell,
                           absl::StrFormat(", %.1f%% NaN", 100 * s.std_undefined_fraction()));
         }
         return cell;
       }},
  };
  // Columns with no value in any row are left out (no references: no ratios).
  std::vector<std::vector<std::string>> cells(rows.size() + 1);
  for (size_t c = 0; c < sizeof(kColumns) / sizeof(kColumns[0]); ++c) {
    std::vector<std::string> column;
    bool any = false;
    for (const ResultRow& row : rows) {
      column.push_back(kColumns[c].cell(row));
      any = any || !column.back().empty();
    }
    if (!any && c > 0) continue;
    cells[0].push_back(kColumns[c].header);
    for (size_t r = 0; r < rows.size(); ++r) cells[r + 1].push_back(column[r]);
  }
  return AlignedTable(cells);
}

MeanAndError MeanWithError(const std::vector<double>& values) {
  MeanAndError out;
  double sum = 0;
  for (double v : values) {
    if (!Has(v)) continue;
    sum += v;
    ++out.count;
  }
  if (out.count == 0) return out;
  out.mean = sum / static_cast<double>(out.count);
  if (out.count < 2) return out;
  double squares = 0;
  for (double v : values) {
    if (Has(v)) squares += (v - out.mean) * (v - out.mean);
  }
  const double count = static_cast<double>(out.count);
  out.standard_error = std::sqrt(squares / (count - 1) / count);
  return out;
}

std::vector<SeedSummaryRow> SummarizeOverSeeds(const std::vector<ResultRow>& rows) {
  std::vector<std::string> keys;
  for (const ResultRow& r : rows) {
    if (r.network && std::find(keys.begin(), keys.end(), r.key) == keys.end()) {
      keys.push_back(r.key);
    }
  }
  std::vector<SeedSummaryRow> summary;
  for (const std::string& key : keys) {
    std::vector<double> mse, ratio, to_map, forward;
    SeedSummaryRow out;
    out.key = key;
    for (const ResultRow& r : rows) {
      if (!r.network || r.key != key) continue;
      out.label = r.label.substr(0, r.label.find(", seed "));
      mse.push_back(r.score.mse());
      ratio.push_back(r.score.mse_ratio_to_pm());
      to_map.push_back(r.score.rms_to_map());
      forward.push_back(r.score.forward_error());
    }
    out.mse = MeanWithError(mse);
    out.mse_ratio_to_pm = MeanWithError(ratio);
    out.rms_to_map = MeanWithError(to_map);
    out.forward_error = MeanWithError(forward);
    summary.push_back(std::move(out));
  }
  const SeedSummaryRow* best = nullptr;
  for (const SeedSummaryRow& s : summary) {
    if (Has(s.mse.mean) && (best == nullptr || s.mse.mean < best->mse.mean)) best = &s;
  }
  for (SeedSummaryRow& s : summary) {
    if (best == nullptr || !Has(s.mse.mean)) continue;
    if (&s == best) {
      s.versus_best = "best";
      continue;
    }
    const double difference = s.mse.mean - best->mse.mean;
    const double error = std::hypot(s.mse.standard_error, best->mse.standard_error);
    const std::string text =
        absl::StrCat("+", Metric4(difference), " ± ", Has(error) ? Metric4(error) : "?");
    s.versus_best = Has(error) && difference < 2 * error
                        ? absl::StrCat("within error of the best (", text, ")")
                        : text;
  }
  return summary;
}

std::string SeedSummaryMarkdownTable(const std::vector<SeedSummaryRow>& summary) {
  // "0.1020 ± 0.0006": the error with the mean's decimals (exponents outside [1e-3, 1e5)).
  auto cell = [](const MeanAndError& m, int decimals) {
    if (!Has(m.mean)) return std::string();
    const std::string error =
        Has(m.standard_error) ? absl::StrFormat("%.*f", decimals, m.standard_error) : "?";
    const double a = std::abs(m.mean);
    if (a != 0 && (a >= 1e5 || a < 1e-3)) {
      return absl::StrFormat("%.*e ± %.1e", decimals - 1, m.mean, m.standard_error);
    }
    return absl::StrCat(absl::StrFormat("%.*f", decimals, m.mean), " ± ", error);
  };
  bool ratios = false;
  for (const SeedSummaryRow& s : summary) ratios = ratios || Has(s.mse_ratio_to_pm.mean);
  std::vector<std::vector<std::string>> cells;
  cells.push_back({"estimator", "runs", "MSE", "MSE vs the best"});
  if (ratios) {
    cells[0].insert(cells[0].begin() + 3, "x PM");
    cells[0].insert(cells[0].begin() + 4, "RMS to MAP");
  }
  cells[0].push_back("forward error");
  for (const SeedSummaryRow& s : summary) {
    std::vector<std::string> line = {s.label, absl::StrCat(s.mse.count), cell(s.mse, 4),
                                     s.versus_best};
    if (ratios) {
      line.insert(line.begin() + 3, cell(s.mse_ratio_to_pm, 3));
      line.insert(line.begin() + 4, cell(s.rms_to_map, 3));
    }
    line.push_back(cell(s.forward_error, 4));
    cells.push_back(std::move(line));
  }
  return AlignedTable(cells);
}

std::string ResultsCsv(const std::vector<ResultRow>& rows) {
  std::string csv =
      "estimator,key,kind,model,version,target_space,mse,mse_ratio_to_pm,rms_to_pm,rms_to_map,"
      "forward_error,converged_fraction,mean_iterations,train_seconds,training_seed,"
      "posterior_std_method,mean_posterior_std,std_ratio_mean,std_ratio_median,std_ratio_q10,"
      "std_ratio_q90,std_undefined_fraction\n";
  for (const ResultRow& r : rows) {
    const v1::EstimatorScore& s = r.score;
    absl::StrAppend(&csv, CsvField(r.label), ",", r.key, ",", r.network ? "network" : "reference",
                    ",", s.model(), ",", r.network ? absl::StrCat(s.version()) : "", ",",
                    r.target_space, ",", Full(s.mse()), ",", Full(s.mse_ratio_to_pm()), ",",
                    Full(s.rms_to_pm()), ",", Full(s.rms_to_map()), ",", Full(s.forward_error()),
                    ",", Full(s.converged_fraction()), ",", Full(s.mean_iterations()), ",",
                    Full(r.train_seconds), ",", r.network ? absl::StrCat(r.training_seed) : "",
                    ",", s.posterior_std_method(), ",", Full(s.mean_posterior_std()), ",",
                    Full(s.std_ratio_mean()), ",", Full(s.std_ratio_median()), ",",
                    Full(s.std_ratio_q10()), ",", Full(s.std_ratio_q90()), ",",
                    Full(s.std_undefined_fraction()), "\n");
  }
  return csv;
}

std::string GridSheet(const ExperimentData& data) {
  Sheet sheet;
  sheet.title = absl::StrCat(data.config.label, ": a regular grid through φ and φ⁻¹");
  sheet.subtitle = absl::StrCat(
      data.x_grid->lines, " × ", data.x_grid->lines, " grid lines of ",
      data.x_grid->points_per_line,
      " points each, over the test pairs' range; equal scales on both axes, one range per half");
  sheet.legend = LossLegend(data);
  sheet.legend.push_back({"grid / exact maps", kGridColor, "", false});
  if (data.references.available) {
    sheet.legend.push_back({"exact posterior mean", kPmColor, "", false});
    sheet.legend.push_back({"exact MAP", kMapColor, "", false});
    sheet.legend.push_back({"A⁺y", kPinvColor, "", false});
  }
  const int columns = std::max<int>(4, static_cast<int>(data.models.size()));
  sheet.columns = columns;
  sheet.panel_width = 270;
  sheet.panel_height = 270;

  const Grid& xg = *data.x_grid;
  Sheet::Section forward_refs{"Forward: a regular grid of signals x and the exact forward maps",
                              {}};
  forward_refs.panels.push_back(
      GridPanel("forward-grid", "signal grid x", "x₁", "x₂", xg, xg.points, kGridColor));
  if (!data.exact_forward_grid.values.empty()) {
    forward_refs.panels.push_back(GridPanel("forward-exact-a", "exact A x", "(A x)₁", "(A x)₂", xg,
                                            data.exact_forward_grid, kGridColor));
  }
  if (AnyNormal(data)) {
    forward_refs.panels.push_back(GridPanel("forward-exact-ata", "exact AᵀA x (normal space)",
                                            "(AᵀA x)₁", "(AᵀA x)₂", xg, data.exact_normal_grid,
                                            kGridColor));
  }
  Sheet::Section forward_nets{"Forward: the grid's image under each network φ", {}};
  for (const ModelResult& m : data.models) {
    const LossInfo& info = InfoFor(m.trained.loss);
    forward_nets.panels.push_back(GridPanel(
        absl::StrCat("forward-", info.key), absl::StrCat(info.short_label, ": φ ≈ ", TargetName(m)),
        "φ(x)₁", "φ(x)₂", xg, m.forward_grid_image, info.color));
  }
  std::vector<Panel*> forward_panels;
  for (Panel& p : forward_refs.panels) forward_panels.push_back(&p);
  for (Panel& p : forward_nets.panels) forward_panels.push_back(&p);
  ShareRange(forward_panels);
  sheet.sections.push_back(std::move(forward_refs));
  sheet.sections.push_back(std::move(forward_nets));

  if (data.y_grid.has_value()) {
    const Grid& yg = *data.y_grid;
    Sheet::Section inverse_refs{
        "Inverse: a regular grid of measurements y and the exact estimators", {}};
    inverse_refs.panels.push_back(
        GridPanel("inverse-grid", "measurement grid y", "y₁", "y₂", yg, yg.points, kGridColor));
    const ReferenceResults& refs = data.references;
    if (refs.available) {
      inverse_refs.panels.push_back(GridPanel("inverse-pm", "exact posterior mean", kHat1, kHat2,
                                              yg, refs.posterior_mean_grid, kPmColor));
      inverse_refs.panels.push_back(
          GridPanel("inverse-map", "exact MAP", kHat1, kHat2, yg, refs.map_grid, kMapColor));
      inverse_refs.panels.push_back(GridPanel("inverse-pinv", "A⁺y (pseudo-inverse)", kHat1, kHat2,
                                              yg, refs.pseudo_inverse_grid, kPinvColor));
    }
    Sheet::Section inverse_nets{"Inverse: the grid's image under each network's inverse φ⁻¹", {}};
    for (const ModelResult& m : data.models) {
      const LossInfo& info = InfoFor(m.trained.loss);
      inverse_nets.panels.push_back(GridPanel(absl::StrCat("inverse-", info.key),
                                              absl::StrCat(info.short_label, ": φ⁻¹(y)"), "x̂₁",
                                              "x̂₂", yg, m.inverse_grid_image, info.color));
    }
    std::vector<Panel*> inverse_panels;
    for (Panel& p : inverse_refs.panels) inverse_panels.push_back(&p);
    for (Panel& p : inverse_nets.panels) inverse_panels.push_back(&p);
    ShareRange(inverse_panels);
    sheet.sections.push_back(std::move(inverse_refs));
    sheet.sections.push_back(std::move(inverse_nets));
  }
  return plot::RenderSheet(sheet);
}

std::string SamplesSheet(const ExperimentData& data, int64_t max_points) {
  const int64_t count = ScatterCount(data, max_points);
  Sheet sheet;
  sheet.title = absl::StrCat(data.config.label, ": samples, measurements and reconstructions");
  sheet.subtitle =
      count < data.config.test_pairs
          ? absl::StrCat("the first ", count, " of the ", data.config.test_pairs,
                         " test pairs (every panel shows the same pairs); equal scales")
          : absl::StrCat("all ", count, " test pairs; equal scales");
  sheet.legend = LossLegend(data);
  sheet.columns = std::max<int>(4, static_cast<int>(data.models.size()));
  sheet.panel_width = 270;
  sheet.panel_height = 270;
  Sheet::Section pairs{"Test pairs", {}};
  pairs.panels.push_back(
      ScatterPanel("samples-x", "signals x", "x₁", "x₂", data.x, count, kTruthColor));
  if (data.m == 2) {
    pairs.panels.push_back(ScatterPanel("samples-y", "measurements y = A x + δη", "y₁", "y₂",
                                        data.y, count, kMeasurementColor));
  }
  if (data.references.available) {
    pairs.panels.push_back(ScatterPanel("samples-pm", "exact posterior mean", kHat1, kHat2,
                                        data.references.posterior_mean, count, kPmColor));
    pairs.panels.push_back(ScatterPanel("samples-map", "exact MAP", kHat1, kHat2,
                                        data.references.map, count, kMapColor));
  }
  Sheet::Section nets{"Reconstructions φ⁻¹(y) of each network", {}};
  for (const ModelResult& m : data.models) {
    const LossInfo& info = InfoFor(m.trained.loss);
    nets.panels.push_back(ScatterPanel(absl::StrCat("samples-", info.key), info.label, kHat1, kHat2,
                                       m.reconstructions, count, info.color));
  }
  std::vector<Panel*> panels;
  for (Panel& p : pairs.panels) panels.push_back(&p);
  for (Panel& p : nets.panels) panels.push_back(&p);
  ShareRange(panels, 0.002);
  sheet.sections = {std::move(pairs), std::move(nets)};
  return plot::RenderSheet(sheet);
}

std::string CurvesSheet(const ExperimentData& data) {
  Sheet sheet;
  sheet.title = absl::StrCat(data.config.label, ": training curves");
  sheet.subtitle = "loss: mean over windows of steps; validation: held-out pairs of each job";
  sheet.legend = LossLegend(data);
  std::vector<double> pm_level;
  for (const v1::EstimatorScore& score : data.references.scores) {
    if (score.estimator() != "posterior_mean") continue;
    pm_level.push_back(score.mse());
    sheet.legend.push_back(
        {"exact posterior mean (MSE on the test pairs)", kPmColor, kPmDash, false});
  }
  sheet.columns = 3;
  sheet.panel_width = 380;
  sheet.panel_height = 300;
  Sheet::Section section;
  section.panels.push_back(
      CurvePanel(data, "curve-loss", "training loss", "step", "loss", "loss", {}));
  section.panels.push_back(CurvePanel(data, "curve-val-mse", "validation MSE", "val_step",
                                      "val_mse", "mean ‖x̂ − x‖²", pm_level));
  section.panels.push_back(CurvePanel(data, "curve-val-forward", "validation forward error",
                                      "val_step", "val_forward_error", "RMS ‖φ(x) − t‖", {}));
  sheet.sections.push_back(std::move(section));
  return plot::RenderSheet(sheet);
}

std::string SignalsSheet(const ExperimentData& data, int64_t count) {
  count = std::min(count, data.x.rows());
  Sheet sheet;
  sheet.title = absl::StrCat(data.config.label, ": test signals and their reconstructions");
  sheet.subtitle =
      absl::StrCat("the first ", count, " of the ", data.config.test_pairs, " test pairs");
  sheet.legend.push_back({"truth x", kTruthColor, "", false});
  if (data.m == data.n) sheet.legend.push_back({"measurement y", kMeasurementColor, "2,2", false});
  if (data.references.available) {
    sheet.legend.push_back({"exact posterior mean", kPmColor, kPmDash, false});
  }
  for (const plot::LegendEntry& e : LossLegend(data)) sheet.legend.push_back(e);
  sheet.columns = 2;
  sheet.panel_width = 540;
  sheet.panel_height = 290;
  Sheet::Section section;
  auto line_of = [](const DenseTensor& m, int64_t row) {
    std::vector<Point> line;
    for (int64_t c = 0; c < m.cols(); ++c) line.push_back({static_cast<double>(c), m.at(row, c)});
    return line;
  };
  for (int64_t i = 0; i < count; ++i) {
    Panel panel;
    panel.id = absl::StrCat("signal-", i);
    panel.title = absl::StrCat("test pair ", i + 1);
    panel.x_label = "sample index";
    panel.y_label = "value";
    auto add = [&](const std::string& id, const std::string& color, const std::string& dash,
                   double width, std::vector<Point> line) {
      Series s;
      s.id = id;
      s.color = color;
      s.dash = dash;
      s.width = width;
      s.lines.push_back(std::move(line));
      panel.series.push_back(std::move(s));
    };
    add("truth", kTruthColor, "", 2.4, line_of(data.x, i));
    if (data.m == data.n) add("measurement", kMeasurementColor, "2,2", 1.2, line_of(data.y, i));
    for (const ModelResult& m : data.models) {
      const LossInfo& info = InfoFor(m.trained.loss);
      add(info.key, info.color, "", 1.4, line_of(m.reconstructions, i));
    }
    if (data.references.available) {
      add("posterior-mean", kPmColor, kPmDash, 1.4, line_of(data.references.posterior_mean, i));
    }
    section.panels.push_back(std::move(panel));
  }
  sheet.sections.push_back(std::move(section));
  return plot::RenderSheet(sheet);
}

namespace {

// The experiment with only each loss's first training seed: the figures draw one model per loss.
ExperimentData FirstSeedOnly(const ExperimentData& data) {
  ExperimentData first = data;
  const uint64_t seed = TrainingSeedFor(data.config, 0);
  first.models.clear();
  for (const ModelResult& m : data.models) {
    if (m.trained.training_seed == seed) first.models.push_back(m);
  }
  return first;
}

}  // namespace

absl::StatusOr<ReportFiles> WriteReport(const ExperimentData& all, const std::string& directory) {
  std::error_code error;
  std::filesystem::create_directories(directory, error);
  if (error) {
    const absl::StatusCode code = error == std::errc::permission_denied
                                      ? absl::StatusCode::kPermissionDenied
                                      : absl::StatusCode::kFailedPrecondition;
    return absl::Status(
        code, absl::StrCat(directory, ": cannot create the report directory: ", error.message()));
  }
  const std::vector<ResultRow> rows = ResultRows(all);
  const ExperimentData data = all.config.training_seeds > 1 ? FirstSeedOnly(all) : all;
  std::vector<std::pair<std::string, std::string>> files;  // name, contents
  std::vector<std::string> figures;                        // their sections of report.md
  const bool references = data.references.available;
  if (data.n == 2 && data.x_grid.has_value()) {
    files.emplace_back("grids.svg", GridSheet(data));
    std::string caption = absl::StrCat(
        "*How each map bends a regular grid.* Top: a ", data.x_grid->lines, " × ",
        data.x_grid->lines,
        " grid of signals x, its image under the exact forward map (A x, and AᵀA x for the "
        "normal-equation models), and its image under each network φ (each title says which "
        "map φ approximates). ");
    if (data.y_grid.has_value()) {
      absl::StrAppend(
          &caption, "Bottom: a grid of measurements y, its image under ",
          references ? "the exact posterior-mean and MAP maps (and A⁺y), and under " : "",
          "each network's inverse φ⁻¹ (Reconstruct). ");
    }
    absl::StrAppend(&caption,
                    "**What to look for** (the paper's observations): the log-det inverse makes "
                    "smoother grids than the others; the divergence inverse looks like the MAP "
                    "map; approximation training's inverse looks like A⁻¹ (a linear map that "
                    "ignores the prior); reconstruction training's inverse approaches the "
                    "posterior mean but its φ no longer looks like A.");
    figures.push_back(Figure(Numbered(figures, "A regular grid through φ and φ⁻¹"), "grids.svg",
                             "grids through phi and its inverse", caption));

    const int64_t count = ScatterCount(data, kMaxScatterPoints);
    files.emplace_back("samples.svg", SamplesSheet(data, kMaxScatterPoints));
    figures.push_back(Figure(
        Numbered(figures, "Samples, measurements and reconstructions"), "samples.svg",
        "samples, measurements and reconstructions",
        absl::StrCat(count < data.config.test_pairs
                         ? absl::StrCat("The first ", count, " of the ", data.config.test_pairs,
                                        " test pairs (a subset, for legibility): ")
                         : absl::StrCat("All ", count, " test pairs: "),
                     "signals x, measurements y and each estimator's reconstruction from y, all "
                     "on one scale. **What to look for**: how each reconstruction cloud compares "
                     "with the signal cloud x. A Bayes-optimal estimator pulls noisy measurements "
                     "towards where the prior has its mass (the posterior mean between the modes "
                     "when a measurement is ambiguous, the MAP onto one of them); an A⁻¹-like "
                     "inverse spreads them out with amplified noise.")));
  }
  if (data.n > 2) {
    const int64_t count = std::min(kSignalPanels, data.x.rows());
    files.emplace_back("signals.svg", SignalsSheet(data, kSignalPanels));
    figures.push_back(
        Figure(Numbered(figures, "Test signals and their reconstructions"), "signals.svg",
               "test signals and their reconstructions",
               absl::StrCat("The first ", count,
                            " test signals x (black) against the sample index, with their "
                            "measurement y",
                            data.m == data.n ? " (grey, dotted)" : " (not drawn: m ≠ n)",
                            references ? ", the exact posterior mean (black, dashed)" : "",
                            " and each network's reconstruction. **What to look for**: which "
                            "reconstructions follow the truth and which amplify the noise.")));
  }
  files.emplace_back("curves.svg", CurvesSheet(data));
  figures.push_back(Figure(
      Numbered(figures, "Training curves"), "curves.svg", "training curves",
      absl::StrCat("Training loss (mean over windows of steps), validation MSE and validation "
                   "forward error against the step, per loss. The log-det and divergence losses "
                   "subtract their regulariser, so their loss values are not comparable with the "
                   "others' (and may be negative). **What to look for**: whether each validation "
                   "MSE has levelled off",
                   references ? " and how close it comes to the dashed line, the exact posterior "
                                "mean's MSE on the test pairs (the Bayes risk; the validation "
                                "pairs differ, so expect small offsets)"
                              : "",
                   ".")));

  ReportFiles report;
  report.directory = directory;
  report.table = ResultsMarkdownTable(rows);
  if (all.config.training_seeds > 1) {
    absl::StrAppend(&report.table, "\nover ", all.config.training_seeds,
                    " training seeds (mean ± standard error):\n\n",
                    SeedSummaryMarkdownTable(SummarizeOverSeeds(rows)));
  }
  const std::string md = ReportMarkdown(all, rows, figures);
  files.insert(files.begin(), {"results.csv", ResultsCsv(rows)});
  files.insert(files.begin(), {"report.md", md});
  for (const auto& [name, contents] : files) {
    const std::string path = (std::filesystem::path(directory) / name).string();
    INVNET_RETURN_IF_ERROR(WriteFileAtomically(path, contents));
    report.files.push_back(path);
  }
  report.report = report.files.front();
  return report;
}

}  // namespace invnet::client
