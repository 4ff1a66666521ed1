#ifndef INVNET_SERVER_METRICS_HTTP_H_
#define INVNET_SERVER_METRICS_HTTP_H_

// A deliberately small HTTP/1.1 server for Prometheus scrapes: `GET /metrics` answers 200 with
// the text that `render` returns (text/plain; version=0.0.4), any other path 404, any other
// method 405; a malformed request 400, an oversized one 431, a slow one 408. Every connection is
// closed after one response (Connection: close), so there is no keep-alive state to manage.
//
// A small fixed pool of threads (options.num_threads) share the listening socket: each accepts
// a connection and serves it, under a deadline for reading its request and one for writing the
// response, so a client that connects and sends nothing, sends an endless header, or never
// reads holds one thread for at most those deadlines while the others keep serving scrapes.
// Connections beyond the free threads wait in the listen backlog (64) and are served next, so
// threads, memory and descriptors stay bounded. (Clients that keep num_threads such
// connections open can delay scrapes, not stop them. The exporter is meant for a trusted
// network, like the scrape targets of Prometheus usually are.)
//
//   auto http = MetricsHttpServer::Start("127.0.0.1:0", [&] { return metrics.Render(); });
//   (*http)->port();       // the bound port
//   (*http)->Shutdown();   // stops accepting, ends the connection being served, joins
//
// Thread safety: port() and Shutdown() may be called from any thread; `render` runs on the
// exporter's threads, concurrently for concurrent scrapes, so it must be thread-safe.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace invnet::server {

struct MetricsHttpOptions {
  // Largest request line plus headers; a larger request is answered 431.
  int64_t max_request_bytes = 8192;
  // From accepting a connection until its request's headers are complete (else 408).
  absl::Duration read_timeout = absl::Seconds(2);
  // For sending the response (else the connection is dropped).
  absl::Duration write_timeout = absl::Seconds(5);
  // Connections served at once (1..64), one thread each.
  int num_threads = 4;
};

class MetricsHttpServer {
 public:
  // Returns the body of a successful GET /metrics.
  using Renderer = std::function<std::string()>;

  // Listens on `address` ("host:port", "[v6]:port" or ":port" for every interface; port 0 picks
  // a free port) and starts the threads. INVALID_ARGUMENT ("--metrics_address: ...") for a
  // malformed address (or num_threads out of range), UNAVAILABLE when it cannot be bound.
  static absl::StatusOr<std::unique_ptr<MetricsHttpServer>> Start(const std::string& address,
                                                                  Renderer render,
                                                                  MetricsHttpOptions options = {});
  ~MetricsHttpServer();  // Shutdown()

  int port() const { return port_; }

  // Closes the listening socket and ends the connections being served; waits for the threads.
  // Idempotent.
  void Shutdown();

 private:
  MetricsHttpServer(int listen_fd, int wake_read, int wake_write, int port, Renderer render,
                    MetricsHttpOptions options);
  void Serve();
  void ServeConnection(int fd);
  // Waits until `fd` is ready for `events` or `deadline` passes or Shutdown is called; true
  // when it is ready.
  bool WaitFor(int fd, short events, absl::Time deadline) const;
  // Sends all of `data` by the deadline; false when it could not.
  bool SendAll(int fd, const std::string& data, absl::Time deadline) const;

  const int listen_fd_;
  // A pipe whose write end Shutdown closes: it wakes every poll of every thread at once.
  const int wake_read_;
  int wake_write_;
  const int port_;
  const Renderer render_;
  const MetricsHttpOptions options_;
  std::vector<std::thread> threads_;
  absl::Mutex mu_;
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace invnet::server

#endif  // INVNET_SERVER_METRICS_HTTP_H_
