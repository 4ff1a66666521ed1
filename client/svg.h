#ifndef INVNET_CLIENT_SVG_H_
#define INVNET_CLIENT_SVG_H_

// A small writer of SVG 1.1 documents (the report's figures): nested groups, lines, polylines,
// circles, rectangles and text, with every attribute value and text escaped, and numbers written
// compactly and locale-independently. It knows nothing about plots (client/plot.h draws those).
//
// The output is well-formed XML whatever strings it is given: element and attribute names come
// from the calling code (they must be XML names; that is a precondition, not checked), values
// and text are escaped, and control characters that XML 1.0 forbids are dropped.
//
// A Document is a value owned by one thread at a time (no internal synchronisation).

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"

namespace invnet::client::svg {

// A coordinate or length: fixed notation with at most `decimals` decimals, trailing zeros and
// a trailing '.' removed, "-0" written as "0" ("12.5", "-3", "0.01"). Never exponent notation.
// NaN and +-Inf have no SVG spelling and are written as "0": callers drop non-finite data
// before drawing it (client/plot.h does).
std::string Number(double value, int decimals = 2);

// Text content: & < > escaped; characters XML 1.0 forbids (controls other than tab, newline and
// carriage return) removed. Bytes >= 0x80 are copied unchanged (UTF-8 passes through).
std::string EscapeText(absl::string_view text);
// An attribute value for double quotes: EscapeText plus " and ', and tab/newline/CR as
// character references so that attribute-value normalisation keeps them.
std::string EscapeAttribute(absl::string_view value);

// One attribute: a name and its (unescaped) value. Numbers go through Number().
struct Attr {
  Attr(std::string name, std::string value) : name(std::move(name)), value(std::move(value)) {}
  Attr(std::string name, const char* value) : name(std::move(name)), value(value) {}
  Attr(std::string name, double value) : name(std::move(name)), value(Number(value)) {}
  Attr(std::string name, int value) : name(std::move(name)), value(std::to_string(value)) {}
  Attr(std::string name, long value)  // NOLINT(runtime/int): int64_t on LP64
      : name(std::move(name)), value(std::to_string(value)) {}
  Attr(std::string name, long long value)  // NOLINT(runtime/int)
      : name(std::move(name)), value(std::to_string(value)) {}
  std::string name;
  std::string value;
};
using Attrs = std::vector<Attr>;

struct Point {
  double x = 0;
  double y = 0;
};

class Document {
 public:
  // An <svg> of `width` x `height` user units (pixels), with a viewBox of the same size and,
  // when `title` is not empty, a <title> (shown as the tab name in browsers).
  Document(double width, double height, absl::string_view title = "");

  // <tag attrs...> ... </tag>: Open pushes an element that Close pops (in order).
  void Open(absl::string_view tag, const Attrs& attrs = {});
  void Close();
  // <tag attrs.../>
  void Empty(absl::string_view tag, const Attrs& attrs);
  // <tag attrs...>text</tag>
  void Element(absl::string_view tag, const Attrs& attrs, absl::string_view text);

  // Conveniences; `attrs` add styling (stroke, fill, class, data-*).
  void Group(const Attrs& attrs = {}) { Open("g", attrs); }
  void Line(double x1, double y1, double x2, double y2, const Attrs& attrs = {});
  // Nothing is written for fewer than two points.
  void Polyline(const std::vector<Point>& points, const Attrs& attrs = {});
  void Circle(double cx, double cy, double r, const Attrs& attrs = {});
  void Rect(double x, double y, double width, double height, const Attrs& attrs = {});
  void Text(double x, double y, absl::string_view text, const Attrs& attrs = {});
  // A <clipPath id="id"> holding one rectangle, for clip-path="url(#id)".
  void ClipRect(absl::string_view id, double x, double y, double width, double height);

  // Number of elements opened and not yet closed (the <svg> root not counted).
  size_t depth() const { return open_.size(); }

  // Closes every element still open, then the root, and returns the document (an XML
  // declaration first). The Document is empty afterwards.
  std::string Finish();

 private:
  void Indent();
  void StartTag(absl::string_view tag, const Attrs& attrs);

  std::string out_;
  std::vector<std::string> open_;
};

}  // namespace invnet::client::svg

#endif  // INVNET_CLIENT_SVG_H_
