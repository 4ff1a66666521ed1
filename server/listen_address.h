#ifndef INVNET_SERVER_LISTEN_ADDRESS_H_
#define INVNET_SERVER_LISTEN_ADDRESS_H_

// The TCP addresses the server listens on (--address, --metrics_address): parsing
// "host:port", "[v6]:port" or ":port" (every interface), telling loopback from the rest, and
// binding a listening socket. gRPC-free; every function may be called from any thread.

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace invnet::server {

struct ListenAddress {
  std::string host;  // without brackets; "" = every interface
  int port = 0;      // 0..65535; 0 picks a free port
};

// INVALID_ARGUMENT "<flag>: '<address>' is not host:port ..." when the port is missing, not a
// number or outside 0..65535 (`flag` names the option, e.g. "--address").
absl::StatusOr<ListenAddress> ParseListenAddress(absl::string_view flag, absl::string_view address);

// True when only this machine can reach `address`: "localhost", 127.0.0.0/8 or ::1. Every
// interface ("", 0.0.0.0, ::) and every other name or address is not loopback.
bool IsLoopback(const ListenAddress& address);

// A non-blocking, close-on-exec TCP socket listening on `address` with SO_REUSEADDR and never
// SO_REUSEPORT (so a port another process listens on is refused, not shared); the caller owns
// the descriptor. INVALID_ARGUMENT "<flag>: cannot resolve ..." when the host does not resolve,
// UNAVAILABLE "<flag>: cannot listen on <address>: <reason>" when it cannot be bound (for a
// taken port the reason is "address already in use").
absl::StatusOr<int> ListenTcp(absl::string_view flag, const ListenAddress& address, int backlog);

// The port a listening socket is bound to.
int BoundPort(int fd);

}  // namespace invnet::server

#endif  // INVNET_SERVER_LISTEN_ADDRESS_H_
