#include "client/svg.h"

#include <cmath>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace invnet::client::svg {
namespace {

// XML 1.0 allows tab, newline and carriage return below 0x20 and nothing else.
bool IsForbiddenControl(unsigned char c) {
  return (c < 0x20 && c != '\t' && c != '\n' && c != '\r') || c == 0x7f;
}

std::string Escape(absl::string_view text, bool attribute) {
  std::string out;
  out.reserve(text.size());
  for (const char ch : text) {
    const unsigned char c = static_cast<unsigned char>(ch);
    if (IsForbiddenControl(c)) continue;
    switch (ch) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += attribute ? "&quot;" : "\"";
        break;
      case '\'':
        out += attribute ? "&apos;" : "'";
        break;
      case '\t':
        out += attribute ? "&#9;" : "\t";
        break;
      case '\n':
        out += attribute ? "&#10;" : "\n";
        break;
      case '\r':
        out += attribute ? "&#13;" : "\r";
        break;
      default:
        out += ch;
    }
  }
  return out;
}

}  // namespace

std::string Number(double value, int decimals) {
  if (!std::isfinite(value)) return "0";
  std::string text = absl::StrFormat("%.*f", decimals, value);
  if (text.find('.') != std::string::npos) {
    while (text.back() == '0') text.pop_back();
    if (text.back() == '.') text.pop_back();
  }
  if (text == "-0") text = "0";
  return text;
}

std::string EscapeText(absl::string_view text) { return Escape(text, /*attribute=*/false); }
std::string EscapeAttribute(absl::string_view value) { return Escape(value, /*attribute=*/true); }

Document::Document(double width, double height, absl::string_view title) {
  absl::StrAppend(&out_, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n",
                  "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"",
                  Number(width), "\" height=\"", Number(height), "\" viewBox=\"0 0 ", Number(width),
                  " ", Number(height), "\" font-family=\"Helvetica, Arial, sans-serif\">\n");
  if (!title.empty()) absl::StrAppend(&out_, "  <title>", EscapeText(title), "</title>\n");
}

void Document::Indent() { out_.append(2 * (open_.size() + 1), ' '); }

void Document::StartTag(absl::string_view tag, const Attrs& attrs) {
  Indent();
  absl::StrAppend(&out_, "<", tag);
  for (const Attr& attr : attrs) {
    absl::StrAppend(&out_, " ", attr.name, "=\"", EscapeAttribute(attr.value), "\"");
  }
}

void Document::Open(absl::string_view tag, const Attrs& attrs) {
  StartTag(tag, attrs);
  out_ += ">\n";
  open_.emplace_back(tag);
}

void Document::Close() {
  if (open_.empty()) return;
  const std::string tag = std::move(open_.back());
  open_.pop_back();
  Indent();
  absl::StrAppend(&out_, "</", tag, ">\n");
}

void Document::Empty(absl::string_view tag, const Attrs& attrs) {
  StartTag(tag, attrs);
  out_ += "/>\n";
}

void Document::Element(absl::string_view tag, const Attrs& attrs, absl::string_view text) {
  StartTag(tag, attrs);
  absl::StrAppend(&out_, ">", EscapeText(text), "</", tag, ">\n");
}

void Document::Line(double x1, double y1, double x2, double y2, const Attrs& attrs) {
  Attrs all = {{"x1", x1}, {"y1", y1}, {"x2", x2}, {"y2", y2}};
  all.insert(all.end(), attrs.begin(), attrs.end());
  Empty("line", all);
}

void Document::Polyline(const std::vector<Point>& points, const Attrs& attrs) {
  if (points.size() < 2) return;
  std::string coordinates;
  coordinates.reserve(points.size() * 12);
  for (const Point& p : points) {
    if (!coordinates.empty()) coordinates += ' ';
    absl::StrAppend(&coordinates, Number(p.x), ",", Number(p.y));
  }
  Attrs all = {{"points", coordinates}, {"fill", "none"}};
  all.insert(all.end(), attrs.begin(), attrs.end());
  Empty("polyline", all);
}

void Document::Circle(double cx, double cy, double r, const Attrs& attrs) {
  Attrs all = {{"cx", cx}, {"cy", cy}, {"r", r}};
  all.insert(all.end(), attrs.begin(), attrs.end());
  Empty("circle", all);
}

void Document::Rect(double x, double y, double width, double height, const Attrs& attrs) {
  Attrs all = {{"x", x}, {"y", y}, {"width", width}, {"height", height}};
  all.insert(all.end(), attrs.begin(), attrs.end());
  Empty("rect", all);
}

void Document::Text(double x, double y, absl::string_view text, const Attrs& attrs) {
  Attrs all = {{"x", x}, {"y", y}};
  all.insert(all.end(), attrs.begin(), attrs.end());
  Element("text", all, text);
}

void Document::ClipRect(absl::string_view id, double x, double y, double width, double height) {
  Open("clipPath", {{"id", std::string(id)}});
  Rect(x, y, width, height);
  Close();
}

std::string Document::Finish() {
  while (!open_.empty()) Close();
  out_ += "</svg>\n";
  std::string result = std::move(out_);
  out_.clear();
  return result;
}

}  // namespace invnet::client::svg
