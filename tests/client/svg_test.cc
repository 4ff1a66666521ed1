#include "client/svg.h"

#include <cmath>
#include <limits>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/xml.h"

namespace invnet::client::svg {
namespace {

using ::invnet::testing::IsOk;
using ::invnet::testing::ParseXml;
using ::invnet::testing::XmlElement;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

TEST(SvgNumberTest, CompactFixedNotation) {
  EXPECT_EQ(Number(1.0), "1");
  EXPECT_EQ(Number(12.3456), "12.35");
  EXPECT_EQ(Number(-3.10), "-3.1");
  EXPECT_EQ(Number(0.5), "0.5");
  EXPECT_EQ(Number(1e6), "1000000");
  EXPECT_EQ(Number(1e-7), "0");
  EXPECT_EQ(Number(-0.0001), "0");  // never "-0"
  EXPECT_EQ(Number(-0.0), "0");
  EXPECT_EQ(Number(0.123456, 4), "0.1235");
  EXPECT_EQ(Number(2.5, 0), "2");    // round-half-even of printf
  EXPECT_EQ(Number(250, 0), "250");  // trailing zeros of integers stay
}

TEST(SvgNumberTest, NonFiniteValuesBecomeZero) {
  EXPECT_EQ(Number(std::numeric_limits<double>::quiet_NaN()), "0");
  EXPECT_EQ(Number(INFINITY), "0");
  EXPECT_EQ(Number(-INFINITY), "0");
}

TEST(SvgEscapeTest, TextAndAttributes) {
  EXPECT_EQ(EscapeText("a<b & c>d"), "a&lt;b &amp; c&gt;d");
  EXPECT_EQ(EscapeText("say \"hi\" it's"), "say \"hi\" it's");
  EXPECT_EQ(EscapeAttribute("say \"hi\" it's <&>"), "say &quot;hi&quot; it&apos;s &lt;&amp;&gt;");
  EXPECT_EQ(EscapeAttribute("a\tb\nc\rd"), "a&#9;b&#10;c&#13;d");
  // Controls XML 1.0 cannot hold are dropped; UTF-8 passes through.
  EXPECT_EQ(EscapeText(std::string("a\x01"
                                   "b\x1f"
                                   "c\x7f",
                                   6)),
            "abc");
  EXPECT_EQ(EscapeText("φ⁻¹ ‖x̂‖²"), "φ⁻¹ ‖x̂‖²");
}

TEST(SvgDocumentTest, WritesAWellFormedDocument) {
  Document doc(300, 200.5, "a <title> & more");
  doc.Group({{"class", "panel"}, {"data-panel", "p&1"}});
  doc.Line(0, 0, 10.123, 20, {{"stroke", "#000"}});
  doc.Polyline({{0, 0}, {1, 1}, {2, 0.5}}, {{"stroke", "red"}});
  doc.Circle(5, 5, 1.5, {{"fill", "blue"}});
  doc.Rect(1, 2, 3, 4);
  doc.Text(10, 20, "x < y && \"quoted\"", {{"font-size", 12}});
  doc.ClipRect("clip0", 0, 0, 100, 100);
  doc.Close();
  const std::string text = doc.Finish();
  EXPECT_THAT(text, StartsWith("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg "));

  absl::StatusOr<XmlElement> root = ParseXml(text);
  ASSERT_THAT(root, IsOk()) << text;
  EXPECT_EQ(root->name, "svg");
  EXPECT_EQ(root->Attr("xmlns"), "http://www.w3.org/2000/svg");
  EXPECT_EQ(root->Attr("width"), "300");
  EXPECT_EQ(root->Attr("height"), "200.5");
  EXPECT_EQ(root->Attr("viewBox"), "0 0 300 200.5");
  ASSERT_EQ(root->Count("title"), 1);
  EXPECT_EQ(root->FindAll("title")[0]->text, "a <title> & more");
  ASSERT_EQ(root->Count("g"), 1);
  EXPECT_EQ(root->FindAll("g")[0]->Attr("data-panel"), "p&1");
  ASSERT_EQ(root->Count("line"), 1);
  EXPECT_EQ(root->FindAll("line")[0]->Attr("x2"), "10.12");
  ASSERT_EQ(root->Count("polyline"), 1);
  EXPECT_EQ(root->FindAll("polyline")[0]->Attr("points"), "0,0 1,1 2,0.5");
  EXPECT_EQ(root->FindAll("polyline")[0]->Attr("fill"), "none");
  EXPECT_EQ(root->Count("circle"), 1);
  EXPECT_EQ(root->Count("rect"), 2);  // one of them inside the clipPath
  ASSERT_EQ(root->Count("text"), 1);
  EXPECT_EQ(root->FindAll("text")[0]->text, "x < y && \"quoted\"");
  EXPECT_EQ(root->FindAll("text")[0]->Attr("font-size"), "12");
  ASSERT_EQ(root->Count("clipPath"), 1);
  EXPECT_EQ(root->FindAll("clipPath")[0]->Attr("id"), "clip0");
}

TEST(SvgDocumentTest, HostileStringsStayInTheirElements) {
  const std::string nasty = "</text><script>alert('x')</script> ]]> <!-- \"' &amp; \x02";
  Document doc(10, 10, nasty);
  doc.Text(0, 0, nasty, {{"data-label", nasty}});
  const std::string text = doc.Finish();
  EXPECT_THAT(text, Not(HasSubstr("<script>")));
  absl::StatusOr<XmlElement> root = ParseXml(text);
  ASSERT_THAT(root, IsOk()) << text;
  EXPECT_EQ(root->Count("script"), 0);
  const std::string expected = "</text><script>alert('x')</script> ]]> <!-- \"' &amp; ";
  ASSERT_EQ(root->Count("text"), 1);
  EXPECT_EQ(root->FindAll("text")[0]->text, expected);
  EXPECT_EQ(root->FindAll("text")[0]->Attr("data-label"), expected);
  EXPECT_EQ(root->FindAll("title")[0]->text, expected);
}

TEST(SvgDocumentTest, AttributesKeepNewlinesAndTabs) {
  Document doc(10, 10);
  doc.Rect(0, 0, 1, 1, {{"data-note", "line 1\nline 2\tend"}});
  absl::StatusOr<XmlElement> root = ParseXml(doc.Finish());
  ASSERT_THAT(root, IsOk());
  EXPECT_EQ(root->FindAll("rect")[0]->Attr("data-note"), "line 1\nline 2\tend");
}

TEST(SvgDocumentTest, FinishClosesOpenElementsInOrder) {
  Document doc(10, 10);
  doc.Group({{"id", "outer"}});
  doc.Group({{"id", "inner"}});
  doc.Circle(1, 1, 1);
  EXPECT_EQ(doc.depth(), 2u);
  const std::string text = doc.Finish();
  EXPECT_EQ(doc.depth(), 0u);
  absl::StatusOr<XmlElement> root = ParseXml(text);
  ASSERT_THAT(root, IsOk()) << text;
  ASSERT_EQ(root->children.size(), 1u);
  const XmlElement& outer = root->children[0];
  EXPECT_EQ(outer.Attr("id"), "outer");
  ASSERT_EQ(outer.children.size(), 1u);
  EXPECT_EQ(outer.children[0].Attr("id"), "inner");
  EXPECT_EQ(outer.children[0].Count("circle"), 1);
  // Close() with nothing open is harmless.
  Document empty(1, 1);
  empty.Close();
  EXPECT_THAT(ParseXml(empty.Finish()), IsOk());
}

TEST(SvgDocumentTest, PolylineNeedsTwoPoints) {
  Document doc(10, 10);
  doc.Polyline({});
  doc.Polyline({{1, 1}});
  absl::StatusOr<XmlElement> root = ParseXml(doc.Finish());
  ASSERT_THAT(root, IsOk());
  EXPECT_EQ(root->Count("polyline"), 0);
}

TEST(XmlParserTest, RejectsMalformedXml) {
  // The parser the SVG tests rely on does catch what they are meant to catch.
  EXPECT_THAT(ParseXml("<svg><g></svg>"), Not(IsOk()));
  EXPECT_THAT(ParseXml("<svg><text>a < b</text></svg>"), Not(IsOk()));
  EXPECT_THAT(ParseXml("<svg a=\"1\" a=\"2\"/>"), Not(IsOk()));
  EXPECT_THAT(ParseXml(""), Not(IsOk()));
}

}  // namespace
}  // namespace invnet::client::svg
