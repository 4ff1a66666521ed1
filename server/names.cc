#include "server/names.h"

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace invnet::server {

std::string QuoteForMessage(absl::string_view value) {
  if (value.size() <= kMaxEchoedChars) return absl::StrCat("'", absl::CHexEscape(value), "'");
  return absl::StrCat("'", absl::CHexEscape(value.substr(0, kMaxEchoedChars)), "...' (",
                      value.size(), " bytes)");
}

absl::Status ValidateName(absl::string_view name, absl::string_view field) {
  auto lower_or_digit = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  bool ok = !name.empty() && name.size() <= 63 && lower_or_digit(name[0]);
  for (size_t i = 1; ok && i < name.size(); ++i) {
    ok = lower_or_digit(name[i]) || name[i] == '_' || name[i] == '-';
  }
  if (ok) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      field, ": ", QuoteForMessage(name),
      " must match [a-z0-9][a-z0-9_-]{0,62} (lower-case letters, digits, '_' and '-')"));
}

absl::Status ValidateRequestId(absl::string_view id, absl::string_view field) {
  auto allowed = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '-';
  };
  bool ok = !id.empty() && id.size() <= 128;
  for (size_t i = 0; ok && i < id.size(); ++i) ok = allowed(id[i]);
  if (ok) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      field, ": ", QuoteForMessage(id),
      " must match [A-Za-z0-9_-]{1,128} (letters, digits, '_' and '-'; a UUID fits)"));
}

}  // namespace invnet::server
