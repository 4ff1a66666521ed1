#include "server/names.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/escaping.h"

namespace invnet::server {

absl::Status ValidateName(absl::string_view name, absl::string_view field) {
  auto lower_or_digit = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  bool ok = !name.empty() && name.size() <= 63 && lower_or_digit(name[0]);
  for (size_t i = 1; ok && i < name.size(); ++i) {
    ok = lower_or_digit(name[i]) || name[i] == '_' || name[i] == '-';
  }
  if (ok) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      field, ": '", absl::CHexEscape(name.substr(0, 80)),
      "' must match [a-z0-9][a-z0-9_-]{0,62} (lower-case letters, digits, '_' and '-')"));
}

}  // namespace invnet::server
