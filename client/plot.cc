#include "client/plot.h"

#include <algorithm>
#include <cmath>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace invnet::client::plot {
namespace {

// Panel layout (pixels): room for the title above, tick labels and axis labels left and below.
constexpr double kPanelLeft = 54;
constexpr double kPanelRight = 12;
constexpr double kPanelTop = 28;
constexpr double kPanelBottom = 40;

// Sheet layout.
constexpr double kMargin = 16;
constexpr double kTitleSize = 18;
constexpr double kSectionHeadingHeight = 26;
constexpr double kLegendRowHeight = 20;

constexpr char kAxisColor[] = "#444444";
constexpr char kGridColor[] = "#e8e8e8";
constexpr char kTextColor[] = "#222222";

// Rough width of a line of text (no font metrics in SVG writing; good enough for layout).
double TextWidth(const std::string& text, double font_size) {
  return 0.58 * font_size * static_cast<double>(text.size());
}

bool Finite(const Point& p) { return std::isfinite(p.x) && std::isfinite(p.y); }

void CollectCoordinates(const Panel& panel, std::vector<double>* xs, std::vector<double>* ys) {
  for (const Series& s : panel.series) {
    for (const auto& line : s.lines) {
      for (const Point& p : line) {
        if (!Finite(p)) continue;
        xs->push_back(p.x);
        ys->push_back(p.y);
      }
    }
    for (const Point& p : s.points) {
      if (!Finite(p)) continue;
      xs->push_back(p.x);
      ys->push_back(p.y);
    }
  }
}

// Widens `r` about its centre to `width`.
Range Widen(const Range& r, double width) {
  const double centre = 0.5 * (r.lo + r.hi);
  return {centre - 0.5 * width, centre + 0.5 * width};
}

// Maps data coordinates into the plot area.
struct Frame {
  double left, top, width, height;
  Range x, y;
  double X(double v) const { return left + (v - x.lo) / (x.hi - x.lo) * width; }
  double Y(double v) const { return top + height - (v - y.lo) / (y.hi - y.lo) * height; }
};

void DrawLegendSwatch(const LegendEntry& e, double x, double y, svg::Document* doc) {
  if (e.point) {
    doc->Rect(x + 5, y - 4, 8, 8, {{"fill", e.color}});
    return;
  }
  svg::Attrs attrs = {{"stroke", e.color}, {"stroke-width", 2.5}};
  if (!e.dash.empty()) attrs.emplace_back("stroke-dasharray", e.dash);
  doc->Line(x, y, x + 18, y, attrs);
}

std::vector<LegendEntry> LegendOf(const Panel& panel) {
  std::vector<LegendEntry> entries;
  for (const Series& s : panel.series) {
    if (s.label.empty()) continue;
    entries.push_back({s.label, s.color, s.dash, s.kind == Series::Kind::kPoints});
  }
  return entries;
}

void DrawPanelLegend(const Panel& panel, const Frame& f, svg::Document* doc) {
  const std::vector<LegendEntry> entries = LegendOf(panel);
  if (entries.empty()) return;
  constexpr double kRow = 14, kFont = 10;
  double text_width = 0;
  for (const LegendEntry& e : entries) text_width = std::max(text_width, TextWidth(e.label, kFont));
  const double w = 30 + text_width, h = kRow * static_cast<double>(entries.size()) + 6;
  double x = f.left + f.width - w - 4, y = f.top + 4;
  if (panel.legend_position == LegendPosition::kTopLeft) x = f.left + 4;
  if (panel.legend_position == LegendPosition::kBottomRight) y = f.top + f.height - h - 4;
  doc->Group({{"class", "legend"}});
  doc->Rect(x, y, w, h, {{"fill", "#ffffff"}, {"fill-opacity", 0.85}, {"stroke", "#cccccc"}});
  for (size_t i = 0; i < entries.size(); ++i) {
    const double row_y = y + 3 + kRow * (static_cast<double>(i) + 0.5);
    DrawLegendSwatch(entries[i], x + 5, row_y, doc);
    doc->Text(x + 27, row_y + 3.5, entries[i].label, {{"font-size", kFont}, {"fill", kTextColor}});
  }
  doc->Close();
}

void DrawAxes(const Panel& panel, const Frame& f, svg::Document* doc) {
  doc->Group({{"class", "axes"}, {"font-size", 10}, {"fill", kTextColor}});
  const std::vector<double> x_ticks = NiceTicks(f.x.lo, f.x.hi, std::max(3, int(f.width / 60)));
  const std::vector<double> y_ticks = NiceTicks(f.y.lo, f.y.hi, std::max(3, int(f.height / 45)));
  const double x_step = x_ticks.size() > 1 ? x_ticks[1] - x_ticks[0] : 1;
  const double y_step = y_ticks.size() > 1 ? y_ticks[1] - y_ticks[0] : 1;
  for (double t : x_ticks) {
    const double px = f.X(t);
    doc->Line(px, f.top, px, f.top + f.height, {{"stroke", kGridColor}});
    doc->Line(px, f.top + f.height, px, f.top + f.height + 4, {{"stroke", kAxisColor}});
    doc->Text(px, f.top + f.height + 15, TickLabel(t, x_step), {{"text-anchor", "middle"}});
  }
  for (double t : y_ticks) {
    const double py = f.Y(t);
    doc->Line(f.left, py, f.left + f.width, py, {{"stroke", kGridColor}});
    doc->Line(f.left - 4, py, f.left, py, {{"stroke", kAxisColor}});
    doc->Text(f.left - 6, py + 3.5, TickLabel(t, y_step), {{"text-anchor", "end"}});
  }
  doc->Rect(f.left, f.top, f.width, f.height, {{"fill", "none"}, {"stroke", kAxisColor}});
  if (!panel.x_label.empty()) {
    doc->Text(f.left + 0.5 * f.width, f.top + f.height + 31, panel.x_label,
              {{"text-anchor", "middle"}, {"font-size", 11}});
  }
  if (!panel.y_label.empty()) {
    const double lx = f.left - 40, ly = f.top + 0.5 * f.height;
    doc->Text(
        lx, ly, panel.y_label,
        {{"text-anchor", "middle"},
         {"font-size", 11},
         {"transform", absl::StrCat("rotate(-90 ", svg::Number(lx), " ", svg::Number(ly), ")")}});
  }
  doc->Close();
}

void DrawSeries(const Series& s, const Frame& f, svg::Document* doc) {
  if (s.kind == Series::Kind::kPoints) {
    int64_t count = 0;
    for (const Point& p : s.points) count += Finite(p) ? 1 : 0;
    doc->Group({{"class", "series"},
                {"data-series", s.id},
                {"data-points", static_cast<long long>(count)},  // NOLINT(runtime/int)
                {"fill", s.color},
                {"fill-opacity", s.opacity}});
    for (const Point& p : s.points) {
      if (Finite(p)) doc->Circle(f.X(p.x), f.Y(p.y), s.radius);
    }
    doc->Close();
    return;
  }
  svg::Attrs attrs = {
      {"class", "series"},       {"data-series", s.id},         {"stroke", s.color},
      {"stroke-width", s.width}, {"stroke-opacity", s.opacity}, {"stroke-linejoin", "round"},
      {"fill", "none"}};
  if (!s.dash.empty()) attrs.emplace_back("stroke-dasharray", s.dash);
  doc->Group(attrs);
  for (const auto& line : s.lines) {
    std::vector<Point> segment;
    auto flush = [&] {
      if (segment.size() >= 2) doc->Polyline(segment);
      segment.clear();
    };
    for (const Point& p : line) {
      if (!Finite(p)) {
        flush();
        continue;
      }
      segment.push_back({f.X(p.x), f.Y(p.y)});
    }
    flush();
  }
  doc->Close();
}

}  // namespace

std::optional<Range> RangeOf(const std::vector<double>& values, double pad) {
  double lo = INFINITY, hi = -INFINITY;
  for (double v : values) {
    if (!std::isfinite(v)) continue;
    lo = std::min(lo, v);
    hi = std::max(hi, v);
  }
  if (lo > hi) return std::nullopt;
  if (hi - lo <= 1e-12 * std::max(1.0, std::abs(lo))) {
    const double half = std::max(0.5, std::abs(lo) / 10);
    return Range{lo - half, hi + half};
  }
  const double margin = pad * (hi - lo);
  return Range{lo - margin, hi + margin};
}

std::vector<double> NiceTicks(double lo, double hi, int target) {
  if (!std::isfinite(lo) || !std::isfinite(hi) || lo >= hi) return {};
  target = std::max(target, 2);
  // Candidate steps m * 10^k, m in {1, 2, 2.5, 5}: the smallest at least (hi - lo) / target,
  // then smaller ones while fewer than three ticks would fall inside the range.
  static constexpr double kMantissas[] = {1.0, 2.0, 2.5, 5.0};
  const double raw = (hi - lo) / target;
  int exponent = static_cast<int>(std::floor(std::log10(raw)));
  int index = 0;
  auto step_of = [&] { return kMantissas[index] * std::pow(10.0, exponent); };
  while (step_of() < raw * (1 - 1e-9)) {
    if (++index == 4) {
      index = 0;
      ++exponent;
    }
  }
  std::vector<double> ticks;
  for (int attempt = 0; attempt < 4; ++attempt) {
    const double step = step_of();
    ticks.clear();
    const double first = std::ceil(lo / step - 1e-9);
    const double last = std::floor(hi / step + 1e-9);
    for (double k = first; k <= last; k += 1) ticks.push_back(k * step);
    if (ticks.size() >= 3) break;
    if (--index < 0) {
      index = 3;
      --exponent;
    }
  }
  return ticks;
}

std::string TickLabel(double value, double step) {
  if (std::abs(value) < 1e-9 * step) value = 0;
  const double magnitude = std::max(std::abs(value), step);
  std::string text;
  if (magnitude >= 1e6 || step < 1e-4) {
    text = absl::StrFormat("%.3g", value);
  } else {
    int decimals = std::max(0, static_cast<int>(-std::floor(std::log10(step) + 1e-9)));
    // A step of 2.5 * 10^k needs one digit more than 10^k.
    const double scaled = step / std::pow(10.0, -decimals);
    if (std::abs(scaled - std::round(scaled)) > 1e-6) ++decimals;
    text = absl::StrFormat("%.*f", decimals, value);
  }
  if (text == "-0") text = "0";
  return text;
}

void DrawPanel(const Panel& panel, double x, double y, double width, double height,
               const std::string& clip_id, svg::Document* doc) {
  Frame f;
  f.left = kPanelLeft;
  f.top = kPanelTop;
  f.width = std::max(10.0, width - kPanelLeft - kPanelRight);
  f.height = std::max(10.0, height - kPanelTop - kPanelBottom);
  std::vector<double> xs, ys;
  CollectCoordinates(panel, &xs, &ys);
  f.x = panel.x_range.value_or(RangeOf(xs).value_or(Range{0, 1}));
  f.y = panel.y_range.value_or(RangeOf(ys).value_or(Range{0, 1}));
  if (!(f.x.hi > f.x.lo)) f.x = Widen(f.x, 1);
  if (!(f.y.hi > f.y.lo)) f.y = Widen(f.y, 1);
  if (panel.equal_aspect) {
    const double scale = std::max((f.x.hi - f.x.lo) / f.width, (f.y.hi - f.y.lo) / f.height);
    f.x = Widen(f.x, scale * f.width);
    f.y = Widen(f.y, scale * f.height);
  }

  svg::Attrs attrs = {
      {"class", "panel"},
      {"data-panel", panel.id},
      {"transform", absl::StrCat("translate(", svg::Number(x), ",", svg::Number(y), ")")}};
  attrs.insert(attrs.end(), panel.attributes.begin(), panel.attributes.end());
  doc->Group(attrs);
  doc->Rect(f.left, f.top, f.width, f.height, {{"fill", "#ffffff"}});
  doc->Text(f.left + 0.5 * f.width, 18, panel.title,
            {{"text-anchor", "middle"},
             {"font-size", 12},
             {"font-weight", "bold"},
             {"fill", kTextColor}});
  DrawAxes(panel, f, doc);
  doc->ClipRect(clip_id, f.left, f.top, f.width, f.height);
  doc->Group({{"class", "data"}, {"clip-path", absl::StrCat("url(#", clip_id, ")")}});
  for (const Series& s : panel.series) DrawSeries(s, f, doc);
  doc->Close();
  if (panel.legend) DrawPanelLegend(panel, f, doc);
  doc->Close();
}

std::string RenderSheet(const Sheet& sheet) {
  const int columns = std::max(1, sheet.columns);
  const double width = 2 * kMargin + columns * sheet.panel_width;

  // The shared legend, wrapped into rows that fit the width.
  std::vector<std::vector<std::pair<const LegendEntry*, double>>> legend_rows;
  double cursor = width;  // forces a first row
  for (const LegendEntry& e : sheet.legend) {
    const double w = 34 + TextWidth(e.label, 12);
    if (cursor + w > width - kMargin) {
      legend_rows.emplace_back();
      cursor = kMargin;
    }
    legend_rows.back().emplace_back(&e, cursor);
    cursor += w;
  }

  double y = kMargin + kTitleSize;
  const double title_y = y;
  const double subtitle_y = y + 18;
  if (!sheet.subtitle.empty()) y = subtitle_y;
  y += 10;
  const double legend_y = y + 0.5 * kLegendRowHeight;
  y += kLegendRowHeight * static_cast<double>(legend_rows.size()) + 8;

  double height = y;
  for (const Sheet::Section& section : sheet.sections) {
    if (!section.heading.empty()) height += kSectionHeadingHeight;
    const size_t rows = (section.panels.size() + columns - 1) / columns;
    height += sheet.panel_height * static_cast<double>(rows);
  }
  height += kMargin;

  svg::Document doc(width, height, sheet.title);
  doc.Rect(0, 0, width, height, {{"fill", "#ffffff"}});
  doc.Text(kMargin, title_y, sheet.title,
           {{"font-size", kTitleSize}, {"font-weight", "bold"}, {"fill", kTextColor}});
  if (!sheet.subtitle.empty()) {
    doc.Text(kMargin, subtitle_y, sheet.subtitle, {{"font-size", 12}, {"fill", "#555555"}});
  }
  if (!legend_rows.empty()) {
    doc.Group({{"class", "legend"}, {"font-size", 12}, {"fill", kTextColor}});
    for (size_t r = 0; r < legend_rows.size(); ++r) {
      const double row_y = legend_y + kLegendRowHeight * static_cast<double>(r);
      for (const auto& [entry, x] : legend_rows[r]) {
        DrawLegendSwatch(*entry, x, row_y, &doc);
        doc.Text(x + 24, row_y + 4, entry->label);
      }
    }
    doc.Close();
  }

  int clip = 0;
  for (const Sheet::Section& section : sheet.sections) {
    if (!section.heading.empty()) {
      doc.Text(kMargin, y + 18, section.heading,
               {{"font-size", 14}, {"font-weight", "bold"}, {"fill", kTextColor}});
      y += kSectionHeadingHeight;
    }
    for (size_t i = 0; i < section.panels.size(); ++i) {
      const double px = kMargin + sheet.panel_width * static_cast<double>(i % columns);
      const double py = y + sheet.panel_height * static_cast<double>(i / columns);
      DrawPanel(section.panels[i], px, py, sheet.panel_width, sheet.panel_height,
                absl::StrCat("clip", clip++), &doc);
    }
    y += sheet.panel_height * static_cast<double>((section.panels.size() + columns - 1) / columns);
  }
  return doc.Finish();
}

}  // namespace invnet::client::plot
