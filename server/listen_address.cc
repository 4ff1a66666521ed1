#include "server/listen_address.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace invnet::server {

absl::StatusOr<ListenAddress> ParseListenAddress(absl::string_view flag,
                                                 absl::string_view address) {
  const size_t colon = address.rfind(':');
  ListenAddress parsed;
  const absl::string_view port =
      colon == absl::string_view::npos ? absl::string_view() : address.substr(colon + 1);
  // SimpleAtoi accepts a sign and surrounding blanks: a port is digits only.
  const bool digits = !port.empty() && port.size() <= 5 &&
                      port.find_first_not_of("0123456789") == absl::string_view::npos;
  if (!digits || !absl::SimpleAtoi(port, &parsed.port) || parsed.port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat(
        flag, ": '", address, "' is not host:port (port 0..65535; 0 picks a free one)"));
  }
  absl::string_view host = address.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  } else if (host.find(':') != absl::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrCat(
        flag, ": '", address, "' is not host:port (write an IPv6 address as [v6]:port)"));
  }
  parsed.host = std::string(host);
  return parsed;
}

bool IsLoopback(const ListenAddress& address) {
  if (absl::AsciiStrToLower(address.host) == "localhost") return true;
  in_addr v4{};
  if (inet_pton(AF_INET, address.host.c_str(), &v4) == 1) {
    return (ntohl(v4.s_addr) >> 24) == 127;
  }
  in6_addr v6{};
  return inet_pton(AF_INET6, address.host.c_str(), &v6) == 1 && IN6_IS_ADDR_LOOPBACK(&v6);
}

absl::StatusOr<int> ListenTcp(absl::string_view flag, const ListenAddress& address, int backlog) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  const std::string service = std::to_string(address.port);
  if (int error = getaddrinfo(address.host.empty() ? nullptr : address.host.c_str(),
                              service.c_str(), &hints, &found);
      error != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": cannot resolve '", address.host, "': ", gai_strerror(error)));
  }
  int listen_fd = -1;
  std::string why = "no address";
  for (addrinfo* ai = found; ai != nullptr && listen_fd < 0; ai = ai->ai_next) {
    const int fd =
        socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
    if (fd < 0) {
      why = std::strerror(errno);
      continue;
    }
    const int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, backlog) != 0) {
      why = errno == EADDRINUSE ? "address already in use" : std::strerror(errno);
      close(fd);
      continue;
    }
    listen_fd = fd;
  }
  freeaddrinfo(found);
  if (listen_fd < 0) {
    const bool v6 = address.host.find(':') != std::string::npos;
    return absl::UnavailableError(absl::StrCat(flag, ": cannot listen on ", v6 ? "[" : "",
                                               address.host, v6 ? "]" : "", ":", address.port, ": ",
                                               why));
  }
  return listen_fd;
}

int BoundPort(int fd) {
  sockaddr_storage bound{};
  socklen_t length = sizeof(bound);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &length) != 0) return 0;
  return bound.ss_family == AF_INET6
             ? ntohs(reinterpret_cast<const sockaddr_in6*>(&bound)->sin6_port)
             : ntohs(reinterpret_cast<const sockaddr_in*>(&bound)->sin_port);
}

}  // namespace invnet::server
