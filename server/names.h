#ifndef INVNET_SERVER_NAMES_H_
#define INVNET_SERVER_NAMES_H_

// Names of models and datasets become directory and file names in the repository, so they are
// validated before any use: [a-z0-9][a-z0-9_-]{0,62}. No dots, no slashes, no path tricks.
// Job ids and preset names follow the same pattern. Any value a client sent that an error
// message repeats goes through QuoteForMessage, so no message grows with the request.

#include <cstddef>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace invnet::server {

// The longest part of a client's value that a message repeats.
inline constexpr size_t kMaxEchoedChars = 64;

// 'value' C-escaped between quotes, cut to kMaxEchoedChars characters with its full length
// appended when longer: "'aaaa...' (20000 bytes)".
std::string QuoteForMessage(absl::string_view value);

// OK or INVALID_ARGUMENT ("model_name: 'Foo/..' must match [a-z0-9][a-z0-9_-]{0,62}").
absl::Status ValidateName(absl::string_view name, absl::string_view field);

// A TrainRequest's idempotency key: [A-Za-z0-9_-]{1,128} (a UUID fits). OK or INVALID_ARGUMENT
// naming `field`.
absl::Status ValidateRequestId(absl::string_view id, absl::string_view field);

}  // namespace invnet::server

#endif  // INVNET_SERVER_NAMES_H_
