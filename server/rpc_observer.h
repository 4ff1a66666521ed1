#ifndef INVNET_SERVER_RPC_OBSERVER_H_
#define INVNET_SERVER_RPC_OBSERVER_H_

// Observes every call of the four invnet.v1 services from outside the handlers, as a gRPC
// server interceptor, so that no handler (and none of its return paths, the token check
// included) can forget to:
//   - count the call by RPC and final status code and time it (ServerMetrics::RecordRpc, from
//     the start of the call until its status is sent);
//   - carry a request id: the client's `x-request-id` metadata, or a fresh 16-digit hex id when
//     it sent none (or one that is not 1..128 printable ASCII characters), sent back in the
//     response's initial metadata as `x-request-id`;
//   - log every failed call as exactly one line "<Rpc> request_id=<id> code=<CODE>: <message>",
//     WARNING for the caller's errors (INVALID_ARGUMENT, NOT_FOUND, CANCELLED, ...) and ERROR for
//     the server's (INTERNAL, UNKNOWN, DATA_LOSS).
// Health checks and reflection are not observed.
//
// Thread safety: the factory is shared by all calls; each interceptor belongs to one call.

#include <string>

#include <grpcpp/support/server_interceptor.h>

#include "absl/strings/string_view.h"
#include "proto/base/request_id.h"
#include "server/metrics.h"

namespace invnet::server {

// A fresh request id: 16 lower-case hex digits.
std::string NewRequestId();
// Whether a client's request id is used as it is: 1..128 printable ASCII characters (no spaces,
// so that a log line stays parseable).
bool IsUsableRequestId(absl::string_view id);

class RpcObserverFactory final : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  // `metrics`: not null, outlives the gRPC server.
  explicit RpcObserverFactory(ServerMetrics* metrics) : metrics_(metrics) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override;

 private:
  ServerMetrics* const metrics_;
};

}  // namespace invnet::server

#endif  // INVNET_SERVER_RPC_OBSERVER_H_
