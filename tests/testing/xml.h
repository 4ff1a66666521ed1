#ifndef INVNET_TESTS_TESTING_XML_H_
#define INVNET_TESTS_TESTING_XML_H_

// A tiny XML document tree built with expat, for tests that check generated XML (the report's
// SVG figures): parsing fails on anything that is not well-formed.

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace invnet::testing {

struct XmlElement {
  std::string name;
  std::map<std::string, std::string> attributes;
  // Character data directly inside this element (entities resolved).
  std::string text;
  std::vector<XmlElement> children;

  // The attribute's value, "" when absent.
  std::string Attr(const std::string& attribute) const;
  bool Has(const std::string& attribute) const { return attributes.count(attribute) > 0; }
  // Every element below this one (not itself), depth first, in document order.
  void Visit(const std::function<void(const XmlElement&)>& visit) const;
  // Descendants named `element`.
  std::vector<const XmlElement*> FindAll(const std::string& element) const;
  // Descendants with attribute `attribute` (any value).
  std::vector<const XmlElement*> WithAttribute(const std::string& attribute) const;
  int Count(const std::string& element) const { return static_cast<int>(FindAll(element).size()); }
};

// The document's root element; INVALID_ARGUMENT with expat's message, line and column when the
// text is not well-formed XML.
absl::StatusOr<XmlElement> ParseXml(absl::string_view text);

}  // namespace invnet::testing

#endif  // INVNET_TESTS_TESTING_XML_H_
