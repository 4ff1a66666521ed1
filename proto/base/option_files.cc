#include "proto/base/option_files.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "proto/base/file_io.h"

namespace invnet {

absl::StatusOr<std::string> ReadOptionFile(absl::string_view option, const std::string& path,
                                           int64_t max_bytes) {
  absl::StatusOr<std::string> contents = ReadFileToString(path, max_bytes);
  if (!contents.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(option, ": ", contents.status().message()));
  }
  return contents;
}

absl::StatusOr<std::string> ReadPemFile(absl::string_view option, const std::string& path,
                                        absl::string_view label) {
  absl::StatusOr<std::string> pem = ReadOptionFile(option, path);
  if (!pem.ok()) return pem;
  // Any block will do: `openssl ecparam -genkey` writes EC PARAMETERS before EC PRIVATE KEY.
  constexpr char kBegin[] = "-----BEGIN ";
  constexpr size_t kBeginLength = sizeof(kBegin) - 1;
  for (size_t begin = pem->find(kBegin); begin != std::string::npos;
       begin = pem->find(kBegin, begin + kBeginLength)) {
    const size_t name = begin + kBeginLength;
    const size_t end = pem->find("-----", name);
    if (end == std::string::npos) break;
    if (absl::EndsWith(absl::string_view(*pem).substr(name, end - name), label)) return pem;
  }
  return absl::InvalidArgumentError(
      absl::StrCat(option, ": ", path, " holds no PEM ", absl::AsciiStrToLower(label)));
}

bool IsPrintableAsciiWord(absl::string_view word) {
  if (word.empty()) return false;
  for (char c : word) {
    if (c < 0x21 || c > 0x7e) return false;
  }
  return true;
}

absl::StatusOr<std::string> ReadTokenFile(absl::string_view option, const std::string& path) {
  absl::StatusOr<std::string> contents = ReadOptionFile(option, path);
  if (!contents.ok()) return contents;
  const absl::string_view token = absl::StripAsciiWhitespace(*contents);
  if (token.empty())
    return absl::InvalidArgumentError(absl::StrCat(option, ": ", path, " is empty"));
  if (!IsPrintableAsciiWord(token)) {
    return absl::InvalidArgumentError(absl::StrCat(
        option, ": ", path, " must hold the token alone: one word of printable ASCII characters"));
  }
  return std::string(token);
}

}  // namespace invnet
