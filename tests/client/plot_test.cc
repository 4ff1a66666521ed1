#include "client/plot.h"

#include <cmath>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/xml.h"

namespace invnet::client::plot {
namespace {

using ::invnet::testing::IsOk;
using ::invnet::testing::ParseXml;
using ::invnet::testing::XmlElement;
using ::testing::DoubleNear;
using ::testing::IsEmpty;

TEST(RangeOfTest, PadsTheDataAndHandlesDegenerateInput) {
  std::optional<Range> r = RangeOf({0, 10, NAN, 5}, 0.1);
  ASSERT_TRUE(r.has_value());
  EXPECT_DOUBLE_EQ(r->lo, -1);
  EXPECT_DOUBLE_EQ(r->hi, 11);
  r = RangeOf({3, 3});
  ASSERT_TRUE(r.has_value());
  EXPECT_DOUBLE_EQ(r->lo, 2.5);
  EXPECT_DOUBLE_EQ(r->hi, 3.5);
  r = RangeOf({100});
  ASSERT_TRUE(r.has_value());
  EXPECT_DOUBLE_EQ(r->lo, 90);
  EXPECT_DOUBLE_EQ(r->hi, 110);
  EXPECT_FALSE(RangeOf({}).has_value());
  EXPECT_FALSE(RangeOf({NAN, INFINITY}).has_value());
}

TEST(NiceTicksTest, RoundStepsInsideTheRange) {
  auto near = [](std::vector<double> expected) {
    return ::testing::Pointwise(DoubleNear(1e-12), expected);
  };
  EXPECT_THAT(NiceTicks(0, 1, 5), near({0, 0.2, 0.4, 0.6, 0.8, 1}));
  EXPECT_THAT(NiceTicks(-2.3, 2.7, 5), near({-2, -1, 0, 1, 2}));
  EXPECT_THAT(NiceTicks(0, 3000, 4), near({0, 1000, 2000, 3000}));
  EXPECT_THAT(NiceTicks(0.08, 0.16, 4), near({0.08, 0.1, 0.12, 0.14, 0.16}));
  EXPECT_THAT(NiceTicks(0, 10, 4), near({0, 2.5, 5, 7.5, 10}));
  // A step of 2 would leave only 0 inside: smaller steps until there are three ticks.
  EXPECT_THAT(NiceTicks(-1.9, 1.9, 3), near({-1, 0, 1}));
  EXPECT_THAT(NiceTicks(1, 1), IsEmpty());
  EXPECT_THAT(NiceTicks(2, 1), IsEmpty());
  EXPECT_THAT(NiceTicks(0, INFINITY), IsEmpty());
}

TEST(TickLabelTest, AsManyDecimalsAsTheStepNeeds) {
  EXPECT_EQ(TickLabel(0.25, 0.25), "0.25");
  EXPECT_EQ(TickLabel(0.5, 0.25), "0.50");
  EXPECT_EQ(TickLabel(2.5, 2.5), "2.5");
  EXPECT_EQ(TickLabel(1500, 500), "1500");
  EXPECT_EQ(TickLabel(-1, 1), "-1");
  EXPECT_EQ(TickLabel(-1e-17, 0.2), "0.0");  // not "-0.0"
  EXPECT_EQ(TickLabel(-0.0, 1), "0");
  EXPECT_EQ(TickLabel(0.12, 0.02), "0.12");
  EXPECT_EQ(TickLabel(2e6, 1e6), "2e+06");
  EXPECT_EQ(TickLabel(3e-5, 1e-5), "3e-05");
}

Panel PointsPanel(const std::string& id, std::vector<Point> points) {
  Panel panel;
  panel.id = id;
  panel.title = "points " + id;
  panel.x_label = "x₁";
  panel.y_label = "x₂";
  panel.equal_aspect = true;
  panel.legend = true;
  Series s;
  s.id = "pts";
  s.label = "samples";
  s.kind = Series::Kind::kPoints;
  s.points = std::move(points);
  panel.series.push_back(std::move(s));
  return panel;
}

const XmlElement* FindPanel(const XmlElement& root, const std::string& id) {
  for (const XmlElement* e : root.WithAttribute("data-panel")) {
    if (e->Attr("data-panel") == id) return e;
  }
  return nullptr;
}

TEST(RenderSheetTest, PanelsSeriesAndLegendsAreStructured) {
  Sheet sheet;
  sheet.title = "a <sheet> & title";
  sheet.subtitle = "small print";
  sheet.legend = {{"line entry", "#ff0000", "4,2", false}, {"point entry", "#00ff00", "", true}};
  sheet.columns = 2;
  Panel lines;
  lines.id = "lines";
  lines.title = "lines";
  lines.legend = true;
  Series s;
  s.id = "broken";
  s.label = "broken line";
  s.dash = "5,3";
  // A NaN splits the line in two polylines.
  s.lines = {{{0, 0}, {1, 1}, {NAN, 2}, {2, 2}, {3, 1}}};
  lines.series.push_back(s);
  sheet.sections.push_back({"first section", {lines, PointsPanel("a", {{0, 0}, {1, 2}, {3, 1}})}});
  sheet.sections.push_back(
      {"", {PointsPanel("b", {{0, 0}, {NAN, 1}, {2, INFINITY}, {5, 5}, {-1, 7}})}});

  const std::string svg = RenderSheet(sheet);
  absl::StatusOr<XmlElement> root = ParseXml(svg);
  ASSERT_THAT(root, IsOk()) << svg;
  EXPECT_EQ(root->FindAll("title")[0]->text, "a <sheet> & title");

  // Circles only as plotted points: 3 in panel a, 3 finite of 5 in panel b.
  EXPECT_EQ(root->Count("circle"), 6);
  const XmlElement* a = FindPanel(*root, "a");
  const XmlElement* b = FindPanel(*root, "b");
  const XmlElement* l = FindPanel(*root, "lines");
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  ASSERT_NE(l, nullptr);
  EXPECT_EQ(a->Attr("class"), "panel");
  EXPECT_EQ(a->Count("circle"), 3);
  EXPECT_EQ(b->Count("circle"), 3);
  const std::vector<const XmlElement*> series = b->WithAttribute("data-series");
  ASSERT_EQ(series.size(), 1u);
  EXPECT_EQ(series[0]->Attr("data-series"), "pts");
  EXPECT_EQ(series[0]->Attr("data-points"), "3");
  EXPECT_EQ(l->Count("polyline"), 2);

  // Every panel's data is clipped to its own area.
  std::set<std::string> clip_ids;
  for (const XmlElement* clip : root->FindAll("clipPath")) clip_ids.insert(clip->Attr("id"));
  EXPECT_EQ(clip_ids.size(), 3u);
  for (const XmlElement* panel : {a, b, l}) {
    bool clipped = false;
    for (const XmlElement* g : panel->WithAttribute("clip-path")) {
      const std::string ref = g->Attr("clip-path");
      clipped = clipped || clip_ids.count(ref.substr(5, ref.size() - 6)) > 0;  // url(#id)
    }
    EXPECT_TRUE(clipped) << panel->Attr("data-panel");
  }

  // Texts: the section heading, panel titles, axis labels, legend labels.
  std::set<std::string> texts;
  for (const XmlElement* t : root->FindAll("text")) texts.insert(t->text);
  for (const char* expected : {"first section", "points a", "points b", "x₁", "x₂", "line entry",
                               "point entry", "broken line", "samples", "small print"}) {
    EXPECT_EQ(texts.count(expected), 1u) << expected;
  }
}

TEST(RenderSheetTest, EqualAspectMapsUnitsToEqualLengths) {
  Sheet sheet;
  sheet.columns = 1;
  sheet.panel_width = 400;
  sheet.panel_height = 250;
  // A wide, flat data set: equal aspect must not stretch y to fill the height.
  sheet.sections.push_back({"", {PointsPanel("p", {{0, 0}, {10, 0}, {0, 1}})}});
  absl::StatusOr<XmlElement> root = ParseXml(RenderSheet(sheet));
  ASSERT_THAT(root, IsOk());
  std::vector<const XmlElement*> circles = root->FindAll("circle");
  ASSERT_EQ(circles.size(), 3u);
  auto coordinate = [](const XmlElement* c, const char* name) {
    double v = 0;
    EXPECT_TRUE(absl::SimpleAtod(c->Attr(name), &v));
    return v;
  };
  const double dx = coordinate(circles[1], "cx") - coordinate(circles[0], "cx");  // 10 units
  const double dy = coordinate(circles[0], "cy") - coordinate(circles[2], "cy");  // 1 unit
  EXPECT_NEAR(dx / 10, dy / 1, 0.05);
  EXPECT_GT(dy, 0);  // y grows upwards
}

}  // namespace
}  // namespace invnet::client::plot
