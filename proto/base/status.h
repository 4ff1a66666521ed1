#ifndef INVNET_BASE_STATUS_H_
#define INVNET_BASE_STATUS_H_

// Adding context to an error without losing what it carries.

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace invnet {

// `status` with "<context>: " before its message, the same code and every payload (the
// request id the client attaches, for one, so that an error can still be found in the
// server's log after layers above added what they were doing). OK stays OK.
absl::Status Annotate(const absl::Status& status, absl::string_view context);

}  // namespace invnet

#endif  // INVNET_BASE_STATUS_H_
