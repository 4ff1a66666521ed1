#ifndef INVNET_BASE_OPTION_FILES_H_
#define INVNET_BASE_OPTION_FILES_H_

// Files that options name: TLS certificates and keys, token files. The server and the client
// read them the same way, so that a file one accepts the other accepts too.

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace invnet {

// The contents of the file that option `option` (a flag or an Options field) names, at most
// `max_bytes`. Every error is INVALID_ARGUMENT "<option>: <path>: <why>": a bad path is a
// usage error, whatever errno said.
absl::StatusOr<std::string> ReadOptionFile(absl::string_view option, const std::string& path,
                                           int64_t max_bytes = int64_t{1} << 20);

// The same, for a PEM file that must hold a `-----BEGIN <label>` block among its blocks: label
// "CERTIFICATE", or "PRIVATE KEY" (which "RSA PRIVATE KEY" and "EC PRIVATE KEY" match too).
absl::StatusOr<std::string> ReadPemFile(absl::string_view option, const std::string& path,
                                        absl::string_view label);

// True when `word` is non-empty printable ASCII without spaces: what an HTTP/2 header value
// (the bearer token) may carry.
bool IsPrintableAsciiWord(absl::string_view word);

// The token of a token file: its contents without surrounding whitespace, one printable ASCII
// word. INVALID_ARGUMENT naming `option` otherwise.
absl::StatusOr<std::string> ReadTokenFile(absl::string_view option, const std::string& path);

}  // namespace invnet

#endif  // INVNET_BASE_OPTION_FILES_H_
