#ifndef INVNET_SERVER_STATUS_UTIL_H_
#define INVNET_SERVER_STATUS_UTIL_H_

// The one place where absl::Status becomes grpc::Status (the canonical codes are numbered alike).

#include <grpcpp/support/status.h>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace invnet::server {

grpc::Status ToGrpcStatus(const absl::Status& status);

// gRPC 1.51's synchronous server answers a request body that does not parse as the method's
// message with INTERNAL and an empty message (GenericDeserialize in grpcpp's proto_utils.h
// reports protobuf's InitializationErrorString(), empty in proto3, and the handler returns that
// status before any invnet code runs). This turns exactly that status (INTERNAL with an empty
// message: no invnet handler sends one) into INVALID_ARGUMENT saying the request of `rpc`
// could not be parsed; any other status comes back unchanged. Applied to every outgoing status
// by the call observer (rpc_observer.h).
grpc::Status ExplainUnparsableRequest(const grpc::Status& status, absl::string_view rpc);

}  // namespace invnet::server

#endif  // INVNET_SERVER_STATUS_UTIL_H_
