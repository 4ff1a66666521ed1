#ifndef INVNET_TESTS_TESTING_HTTP_CLIENT_H_
#define INVNET_TESTS_TESTING_HTTP_CLIENT_H_

// A tiny HTTP client over a raw TCP socket, for tests of the metrics exporter: it sends exactly
// the bytes it is given (so tests can send malformed requests too) and reads until the server
// closes the connection. Plus a parser for the Prometheus text format. Header-only.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace invnet::testing {

struct HttpResponse {
  int status = 0;    // 0 when the server closed without a status line
  std::string head;  // status line and headers
  std::string body;
  bool reset = false;  // the connection was reset (the server dropped it)
};

// A TCP connection to 127.0.0.1:port; -1 on failure.
inline int ConnectLocal(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// Reads from `fd` until the peer closes it or `timeout` passes (DEADLINE_EXCEEDED).
inline absl::StatusOr<HttpResponse> ReadResponse(int fd, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  std::string raw;
  HttpResponse response;
  char buffer[65536];
  while (true) {
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) {
      return absl::DeadlineExceededError(absl::StrCat("no end of response; got: ", raw));
    }
    pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(left)) + 1) <= 0) continue;
    const ssize_t n = recv(fd, buffer, sizeof(buffer), 0);
    if (n == 0) break;
    if (n < 0) {
      if (errno == EINTR) continue;
      response.reset = true;
      break;
    }
    raw.append(buffer, static_cast<size_t>(n));
  }
  const size_t end = raw.find("\r\n\r\n");
  response.head = raw.substr(0, end);
  if (end != std::string::npos) response.body = raw.substr(end + 4);
  const std::vector<absl::string_view> status_line = absl::StrSplit(response.head, ' ');
  if (status_line.size() >= 2) (void)absl::SimpleAtoi(status_line[1], &response.status);
  return response;
}

// Sends `request` as it is (stopping quietly when the server closes early) and reads the
// response.
inline absl::StatusOr<HttpResponse> HttpExchange(int port, absl::string_view request,
                                                 absl::Duration timeout = absl::Seconds(20)) {
  const int fd = ConnectLocal(port);
  if (fd < 0) return absl::UnavailableError(absl::StrCat("cannot connect to port ", port));
  size_t sent = 0;
  while (sent < request.size()) {
    const ssize_t n = send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) break;
    sent += static_cast<size_t>(n);
  }
  absl::StatusOr<HttpResponse> response = ReadResponse(fd, timeout);
  close(fd);
  return response;
}

inline absl::StatusOr<HttpResponse> HttpGet(int port, absl::string_view path) {
  return HttpExchange(
      port, absl::StrCat("GET ", path, " HTTP/1.1\r\nHost: localhost\r\nAccept: */*\r\n\r\n"));
}

// Samples of a Prometheus text exposition: "name{labels}" (as written) -> value.
inline std::map<std::string, double> ParseSamples(absl::string_view text) {
  std::map<std::string, double> samples;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    if (line[0] == '#') continue;
    const size_t space = line.rfind(' ');
    if (space == absl::string_view::npos) continue;
    double value = 0;
    const absl::string_view number = line.substr(space + 1);
    if (number == "+Inf") {
      value = HUGE_VAL;
    } else if (!absl::SimpleAtod(number, &value)) {
      continue;
    }
    samples[std::string(line.substr(0, space))] = value;
  }
  return samples;
}

}  // namespace invnet::testing

#endif  // INVNET_TESTS_TESTING_HTTP_CLIENT_H_
