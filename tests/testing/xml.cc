#include "tests/testing/xml.h"

#include <expat.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace invnet::testing {
namespace {

struct Builder {
  XmlElement root;
  std::vector<XmlElement*> stack;  // open elements; empty before the root starts
  bool have_root = false;
};

void OnStart(void* data, const XML_Char* name, const XML_Char** attributes) {
  Builder& b = *static_cast<Builder*>(data);
  XmlElement* element;
  if (b.stack.empty()) {
    element = &b.root;
    b.have_root = true;
  } else {
    b.stack.back()->children.emplace_back();
    element = &b.stack.back()->children.back();
  }
  element->name = name;
  for (int i = 0; attributes[i] != nullptr; i += 2) {
    element->attributes[attributes[i]] = attributes[i + 1];
  }
  b.stack.push_back(element);
}

void OnEnd(void* data, const XML_Char*) { static_cast<Builder*>(data)->stack.pop_back(); }

void OnText(void* data, const XML_Char* text, int length) {
  Builder& b = *static_cast<Builder*>(data);
  if (!b.stack.empty()) b.stack.back()->text.append(text, static_cast<size_t>(length));
}

}  // namespace

std::string XmlElement::Attr(const std::string& attribute) const {
  auto it = attributes.find(attribute);
  return it == attributes.end() ? "" : it->second;
}

void XmlElement::Visit(const std::function<void(const XmlElement&)>& visit) const {
  for (const XmlElement& child : children) {
    visit(child);
    child.Visit(visit);
  }
}

std::vector<const XmlElement*> XmlElement::FindAll(const std::string& element) const {
  std::vector<const XmlElement*> found;
  Visit([&](const XmlElement& e) {
    if (e.name == element) found.push_back(&e);
  });
  return found;
}

std::vector<const XmlElement*> XmlElement::WithAttribute(const std::string& attribute) const {
  std::vector<const XmlElement*> found;
  Visit([&](const XmlElement& e) {
    if (e.Has(attribute)) found.push_back(&e);
  });
  return found;
}

absl::StatusOr<XmlElement> ParseXml(absl::string_view text) {
  // Children are appended while their parents are open, so element pointers on the stack must
  // stay valid: a vector's elements move when it grows, but only the innermost open element's
  // children vector grows, and nothing on the stack points into it.
  std::unique_ptr<XML_ParserStruct, decltype(&XML_ParserFree)> parser(XML_ParserCreate("UTF-8"),
                                                                      &XML_ParserFree);
  if (parser == nullptr) return absl::InternalError("XML_ParserCreate failed");
  Builder builder;
  XML_SetUserData(parser.get(), &builder);
  XML_SetElementHandler(parser.get(), OnStart, OnEnd);
  XML_SetCharacterDataHandler(parser.get(), OnText);
  if (XML_Parse(parser.get(), text.data(), static_cast<int>(text.size()), /*isFinal=*/1) ==
      XML_STATUS_ERROR) {
    return absl::InvalidArgumentError(
        absl::StrCat("not well-formed XML: ", XML_ErrorString(XML_GetErrorCode(parser.get())),
                     " at line ", XML_GetCurrentLineNumber(parser.get()), ", column ",
                     XML_GetCurrentColumnNumber(parser.get())));
  }
  if (!builder.have_root) return absl::InvalidArgumentError("no root element");
  return std::move(builder.root);
}

}  // namespace invnet::testing
