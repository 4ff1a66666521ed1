#include "server/metrics_http.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "proto/base/status_macros.h"
#include "server/listen_address.h"

namespace invnet::server {
namespace {

constexpr absl::string_view kMetricsContentType = "text/plain; version=0.0.4; charset=utf-8";
// After the response, unread input is drained for at most this long before the socket closes:
// closing a socket with unread data sends a reset, which can destroy the response in flight
// (e.g. a 431 to a client still sending its oversized header).
constexpr absl::Duration kLingerTime = absl::Milliseconds(250);
constexpr int64_t kLingerBytes = int64_t{1} << 20;

std::string Response(int code, absl::string_view reason, absl::string_view content_type,
                     absl::string_view body, absl::string_view extra_headers = "") {
  return absl::StrCat("HTTP/1.1 ", code, " ", reason, "\r\nContent-Type: ", content_type,
                      "\r\nContent-Length: ", body.size(), "\r\nConnection: close\r\n",
                      extra_headers, "\r\n", body);
}

std::string TextResponse(int code, absl::string_view reason, absl::string_view body,
                         absl::string_view extra_headers = "") {
  return Response(code, reason, "text/plain; charset=utf-8", absl::StrCat(body, "\n"),
                  extra_headers);
}

// The end of the header block ("\r\n\r\n", or "\n\n" from lenient clients), or npos.
size_t HeaderEnd(absl::string_view request) {
  const size_t crlf = request.find("\r\n\r\n");
  const size_t lf = request.find("\n\n");
  return std::min(crlf, lf);
}

int MillisecondsUntil(absl::Time deadline) {
  const absl::Duration left = deadline - absl::Now();
  if (left <= absl::ZeroDuration()) return 0;
  return static_cast<int>(std::min<int64_t>(absl::ToInt64Milliseconds(left) + 1, 60000));
}

}  // namespace

absl::StatusOr<std::unique_ptr<MetricsHttpServer>> MetricsHttpServer::Start(
    const std::string& address, Renderer render, MetricsHttpOptions options) {
  if (options.num_threads < 1 || options.num_threads > 64) {
    return absl::InvalidArgumentError(absl::StrCat("metrics exporter: num_threads ",
                                                   options.num_threads, " must lie in [1, 64]"));
  }
  INVNET_ASSIGN_OR_RETURN(const ListenAddress parsed,
                          ParseListenAddress("--metrics_address", address));
  INVNET_ASSIGN_OR_RETURN(const int listen_fd, ListenTcp("--metrics_address", parsed, 64));
  int wake[2];
  if (pipe2(wake, O_CLOEXEC | O_NONBLOCK) != 0) {
    close(listen_fd);
    return absl::InternalError(absl::StrCat("metrics exporter: pipe: ", std::strerror(errno)));
  }
  std::unique_ptr<MetricsHttpServer> server(new MetricsHttpServer(
      listen_fd, wake[0], wake[1], BoundPort(listen_fd), std::move(render), options));
  for (int i = 0; i < options.num_threads; ++i) {
    server->threads_.emplace_back(&MetricsHttpServer::Serve, server.get());
  }
  return server;
}

MetricsHttpServer::MetricsHttpServer(int listen_fd, int wake_read, int wake_write, int port,
                                     Renderer render, MetricsHttpOptions options)
    : listen_fd_(listen_fd),
      wake_read_(wake_read),
      wake_write_(wake_write),
      port_(port),
      render_(std::move(render)),
      options_(options) {}

MetricsHttpServer::~MetricsHttpServer() { Shutdown(); }

void MetricsHttpServer::Shutdown() {
  absl::MutexLock lock(&mu_);
  if (shut_down_) return;
  shut_down_ = true;
  close(wake_write_);  // wakes every poll of the threads (the read end reports POLLHUP)
  for (std::thread& thread : threads_) thread.join();
  close(listen_fd_);
  close(wake_read_);
}

bool MetricsHttpServer::WaitFor(int fd, short events, absl::Time deadline) const {
  while (true) {
    pollfd fds[2] = {{fd, events, 0}, {wake_read_, POLLIN, 0}};
    const int timeout_ms = deadline == absl::InfiniteFuture() ? -1 : MillisecondsUntil(deadline);
    if (timeout_ms == 0) return false;
    const int n = poll(fds, 2, timeout_ms);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 || fds[1].revents != 0) return false;
    if (fds[0].revents != 0) return true;
  }
}

bool MetricsHttpServer::SendAll(int fd, const std::string& data, absl::Time deadline) const {
  size_t sent = 0;
  while (sent < data.size()) {
    // MSG_NOSIGNAL: a client that went away must not raise SIGPIPE in the server.
    const ssize_t n = send(fd, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<size_t>(n);
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (!WaitFor(fd, POLLOUT, deadline)) return false;
    } else {
      return false;
    }
  }
  return true;
}

// Every thread runs this loop on the shared non-blocking listening socket: an idle thread
// accepts the next connection (the others' accept4 finds none: EAGAIN), so a slow client holds
// one thread and the rest keep serving.
void MetricsHttpServer::Serve() {
  while (WaitFor(listen_fd_, POLLIN, absl::InfiniteFuture())) {
    const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) {
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        // Out of descriptors: the pending connection stays readable, so back off instead of
        // spinning on it.
        pollfd wake = {wake_read_, POLLIN, 0};
        poll(&wake, 1, 100);
      }
      continue;
    }
    ServeConnection(fd);
    close(fd);
  }
}

void MetricsHttpServer::ServeConnection(int fd) {
  const absl::Time read_deadline = absl::Now() + options_.read_timeout;
  const auto reply = [&](const std::string& response) {
    const absl::Time write_deadline = absl::Now() + options_.write_timeout;
    if (!SendAll(fd, response, write_deadline)) return;
    shutdown(fd, SHUT_WR);
    const absl::Time linger_deadline = std::min(write_deadline, absl::Now() + kLingerTime);
    char discard[4096];
    for (int64_t drained = 0; drained < kLingerBytes && WaitFor(fd, POLLIN, linger_deadline);) {
      const ssize_t n = recv(fd, discard, sizeof(discard), 0);
      if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) break;
      if (n > 0) drained += n;
    }
  };

  std::string request;
  size_t header_end = std::string::npos;
  char buffer[4096];
  while (header_end == std::string::npos) {
    if (static_cast<int64_t>(request.size()) > options_.max_request_bytes) {
      reply(TextResponse(
          431, "Request Header Fields Too Large",
          absl::StrCat("request headers over ", options_.max_request_bytes, " bytes")));
      return;
    }
    if (!WaitFor(fd, POLLIN, read_deadline)) {
      pollfd wake = {wake_read_, POLLIN, 0};
      if (poll(&wake, 1, 0) == 0) {  // not shutting down: the client was too slow
        reply(TextResponse(408, "Request Timeout", "request not received in time"));
      }
      return;
    }
    const ssize_t n = recv(fd, buffer, sizeof(buffer), 0);
    if (n == 0) return;  // the client closed before finishing its request
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) continue;
      return;
    }
    request.append(buffer, static_cast<size_t>(n));
    header_end = HeaderEnd(request);
  }
  if (static_cast<int64_t>(header_end) > options_.max_request_bytes) {
    reply(
        TextResponse(431, "Request Header Fields Too Large",
                     absl::StrCat("request headers over ", options_.max_request_bytes, " bytes")));
    return;
  }

  absl::string_view line = absl::string_view(request).substr(0, request.find('\n'));
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  const std::vector<absl::string_view> parts = absl::StrSplit(line, ' ');
  if (parts.size() != 3 || parts[0].empty() || parts[1].empty() || parts[1][0] != '/' ||
      !absl::StartsWith(parts[2], "HTTP/1.")) {
    reply(TextResponse(400, "Bad Request", "expected: GET /metrics HTTP/1.1"));
    return;
  }
  if (parts[0] != "GET") {
    reply(TextResponse(405, "Method Not Allowed", "only GET is served", "Allow: GET\r\n"));
    return;
  }
  const absl::string_view path = parts[1].substr(0, parts[1].find('?'));
  if (path != "/metrics") {
    reply(TextResponse(404, "Not Found", "not found: the metrics are at /metrics"));
    return;
  }
  reply(Response(200, "OK", kMetricsContentType, render_()));
}

}  // namespace invnet::server
