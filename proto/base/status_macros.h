#ifndef INVNET_BASE_STATUS_MACROS_H_
#define INVNET_BASE_STATUS_MACROS_H_

// The two macros this Abseil version does not ship. Both evaluate `expr` once.

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define INVNET_STATUS_CONCAT_INNER_(a, b) a##b
#define INVNET_STATUS_CONCAT_(a, b) INVNET_STATUS_CONCAT_INNER_(a, b)

// Returns the status of `expr` from the enclosing function when it is not OK.
#define INVNET_RETURN_IF_ERROR(expr)                 \
  do {                                               \
    ::absl::Status invnet_status_ = (expr);          \
    if (!invnet_status_.ok()) return invnet_status_; \
  } while (false)

// `INVNET_ASSIGN_OR_RETURN(auto x, MakeX());` declares/assigns `x` from a StatusOr, or returns its
// error status from the enclosing function.
#define INVNET_ASSIGN_OR_RETURN(lhs, expr) \
  INVNET_ASSIGN_OR_RETURN_IMPL_(INVNET_STATUS_CONCAT_(invnet_statusor_, __LINE__), lhs, expr)

#define INVNET_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr) \
  auto statusor = (expr);                                  \
  if (!statusor.ok()) return std::move(statusor).status(); \
  lhs = std::move(statusor).value()

#endif  // INVNET_BASE_STATUS_MACROS_H_
