#ifndef INVNET_CLIENT_PLOT_H_
#define INVNET_CLIENT_PLOT_H_

// Plots as SVG, for the experiment report: panels (a framed plot area with axes, "nice" ticks,
// grid lines, axis labels, a title, an optional legend, and line or point series clipped to the
// area) laid out on a sheet (a title, a subtitle, a shared legend and sections of panels in
// rows). Plain data in, a standalone SVG document out (client/svg.h); no plotting dependency.
//
// The SVG is structured for programs as well as people: every panel is a
// <g class="panel" data-panel="ID"> and every series inside it a <g class="series"
// data-series="ID"> holding its polylines, or, for point series, exactly one <circle> per
// finite point and a data-points="COUNT" attribute. No other element of a sheet is a <circle>
// (legend markers are rectangles), so circles counted per series are the plotted samples.
//
// Pure functions of their arguments (thread-safe).

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "client/svg.h"

namespace invnet::client::plot {

using svg::Point;

// A closed interval [lo, hi] of data values.
struct Range {
  double lo = 0;
  double hi = 1;
};

// The smallest range holding every finite value of `values` widened by `pad` (a fraction of its
// width) on each side; a single value (or a zero-width range) is widened to +-max(0.5, |v|/10).
// std::nullopt when no value is finite.
std::optional<Range> RangeOf(const std::vector<double>& values, double pad = 0.05);

// Tick positions in [lo, hi] (up to rounding): the multiples of a step of 1, 2, 2.5 or 5 times a
// power of ten, the smallest such step of at least (hi - lo) / target, made smaller while fewer
// than three ticks would fall inside (a few times at most). Empty when lo >= hi or either is not
// finite.
std::vector<double> NiceTicks(double lo, double hi, int target = 5);
// A tick's label: as many decimals as the step needs ("0.25", "-1", "1500"), exponent notation
// ("1e+06", "2.5e-05") for very large or small magnitudes, never "-0".
std::string TickLabel(double value, double step);

struct Series {
  enum class Kind { kLines, kPoints };
  // data-series attribute (letters, digits, '-', '_').
  std::string id;
  // Legend text; "" leaves the series out of the legend.
  std::string label;
  std::string color = "#000000";
  Kind kind = Kind::kLines;
  // kLines: polylines in data coordinates; a non-finite point breaks its line in two.
  std::vector<std::vector<Point>> lines;
  // kPoints: one marker per point; non-finite points are skipped (and not counted).
  std::vector<Point> points;
  // Stroke width of lines, in pixels.
  double width = 1.5;
  // stroke-dasharray of lines, e.g. "5,3"; "" is solid.
  std::string dash;
  double opacity = 1.0;
  // Marker radius of points, in pixels.
  double radius = 2.0;
};

enum class LegendPosition { kTopLeft, kTopRight, kBottomRight };

struct Panel {
  // data-panel attribute (letters, digits, '-', '_').
  std::string id;
  std::string title;
  std::string x_label;
  std::string y_label;
  // Axis ranges; unset: the range of the data (RangeOf with 5% padding).
  std::optional<Range> x_range;
  std::optional<Range> y_range;
  // One data unit has the same length on both axes (the ranges are widened to fit the area).
  bool equal_aspect = false;
  // Draw a legend of the labelled series inside the plot area.
  bool legend = false;
  LegendPosition legend_position = LegendPosition::kTopRight;
  // Extra attributes of the panel's group, e.g. {"data-points", "500"}.
  svg::Attrs attributes;
  std::vector<Series> series;
};

// An entry of a sheet's shared legend.
struct LegendEntry {
  std::string label;
  std::string color;
  std::string dash;    // for a line swatch
  bool point = false;  // a filled square swatch instead of a line
};

struct Sheet {
  struct Section {
    std::string heading;  // "" for none
    std::vector<Panel> panels;
  };
  std::string title;
  std::string subtitle;  // one line of small print under the title ("" for none)
  std::vector<LegendEntry> legend;
  // Panels per row; a section starts a new row.
  int columns = 4;
  double panel_width = 280;
  double panel_height = 250;
  std::vector<Section> sections;
};

// The sheet as a standalone SVG document.
std::string RenderSheet(const Sheet& sheet);

// Draws `panel` with its top-left corner at (x, y) in a width x height box of `doc`.
// `clip_id` must be unique in the document (it names the panel's clip path).
void DrawPanel(const Panel& panel, double x, double y, double width, double height,
               const std::string& clip_id, svg::Document* doc);

}  // namespace invnet::client::plot

#endif  // INVNET_CLIENT_PLOT_H_
