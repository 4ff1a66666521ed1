#ifndef INVNET_SERVER_NAMES_H_
#define INVNET_SERVER_NAMES_H_

// Names of models and datasets become directory and file names in the repository, so they are
// validated before any use: [a-z0-9][a-z0-9_-]{0,62}. No dots, no slashes, no path tricks.

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace invnet::server {

// OK or INVALID_ARGUMENT ("model_name: 'Foo/..' must match [a-z0-9][a-z0-9_-]{0,62}").
absl::Status ValidateName(absl::string_view name, absl::string_view field);

}  // namespace invnet::server

#endif  // INVNET_SERVER_NAMES_H_
