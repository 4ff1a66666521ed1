#ifndef INVNET_SERVER_STATUS_UTIL_H_
#define INVNET_SERVER_STATUS_UTIL_H_

// The one place where absl::Status becomes grpc::Status (the canonical codes are numbered alike).

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace invnet::server {

grpc::Status ToGrpcStatus(const absl::Status& status);

}  // namespace invnet::server

#endif  // INVNET_SERVER_STATUS_UTIL_H_
