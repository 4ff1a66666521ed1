#ifndef INVNET_SERVER_SERVER_H_
#define INVNET_SERVER_SERVER_H_

// The invnet server: the model repository, the dataset store and the training jobs behind the
// four invnet.v1 services, the standard grpc.health.v1 service and (optionally) reflection.
//
//   auto server = Server::Start(options);   // loads the repository, then listens
//   server->port();                          // the bound port (options may ask for port 0)
//   server->metrics_port();                  // the Prometheus exporter's (0: none)
//   server->InProcessChannel();              // a channel for tests, without TCP
//   server->Shutdown();                      // NOT_SERVING, cancel jobs, drain, stop
//
// Thread safety: all methods may be called from any thread; Shutdown is idempotent.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/dataset_service.h"
#include "server/dataset_store.h"
#include "server/job_manager.h"
#include "server/metrics.h"
#include "server/metrics_http.h"
#include "server/model_repository.h"
#include "server/model_service.h"
#include "server/reconstruct_batcher.h"
#include "server/reconstruction_service.h"
#include "server/service_limits.h"
#include "server/training_service.h"

namespace invnet::server {

struct ServerOptions {
  // host:port to listen on; port 0 picks a free port (see port()). A port another process
  // listens on is refused (no SO_REUSEPORT sharing).
  std::string address = "127.0.0.1:50051";
  // A non-loopback address without auth_tokens_file is refused unless this is set (then a
  // warning is logged): anyone who can reach such a port could train, upload and delete.
  bool allow_unauthenticated = false;
  // The repository directory (created if missing).
  std::string repository;
  // Largest request or response message.
  int64_t max_message_bytes = int64_t{256} << 20;
  // LibTorch intra-op threads per request and per training job (0: the number of cores).
  int torch_threads = 0;
  int max_concurrent_jobs = 2;
  // Training jobs that may wait, QUEUED, for one of them to finish; one more is refused.
  int max_queued_jobs = 16;
  // Open WatchTrainingJob streams at most (each holds a thread of the synchronous server);
  // one more is answered RESOURCE_EXHAUSTED.
  int max_watch_streams = 256;
  // ... and at most this many from one client connection (its peer address), so that one client
  // cannot hold every slot.
  int max_watch_streams_per_connection = 32;
  // Peak memory one training job may need, estimated from its request before it starts
  // (models/memory_estimate.h); 0 = half of the machine's physical memory.
  int64_t max_job_memory_bytes = 0;
  int64_t max_dataset_bytes = int64_t{1} << 30;
  // Model versions the repository serves at most; rows of one request's batch at most.
  int64_t max_model_versions = 1000;
  int64_t max_batch = 1000000;
  bool reflection = true;
  // Dynamic batching of concurrent Reconstruct requests and the bound on queued requests
  // (server/reconstruct_batcher.h).
  BatcherOptions batching;
  // How long Shutdown lets in-flight calls finish before cancelling them.
  absl::Duration shutdown_grace = absl::Seconds(10);
  // TLS: the server's PEM certificate chain and private key, both or neither (neither: a
  // plaintext port, for local use).
  std::string tls_cert_file;
  std::string tls_key_file;
  // PEM CA certificates (needs TLS): clients must present a certificate signed by one of them
  // (mutual TLS); "" = no client certificates asked for.
  std::string tls_client_ca_file;
  // Bearer tokens with their scopes (auth.h); "" = every call is allowed.
  std::string auth_tokens_file;
  // host:port of the Prometheus exporter (GET /metrics over plain HTTP, metrics_http.h); port 0
  // picks a free port (see metrics_port()); "" = no exporter.
  std::string metrics_address;
};

// Checks every option that needs no file or socket: limits in range (none may be 0 where 0
// makes no sense), address host:port with a port in 0..65535, and a non-loopback address only
// with auth_tokens_file or allow_unauthenticated. INVALID_ARGUMENT naming the invnet-server flag
// ("--max_jobs: 0 must be >= 1"), never the option's field name.
absl::Status ValidateServerOptions(const ServerOptions& options);

// True when options.address is reachable from other machines (not loopback).
bool ListensBeyondLoopback(const ServerOptions& options);

class Server {
 public:
  // INVALID_ARGUMENT for bad options (ValidateServerOptions), among them TLS or token files
  // that cannot be read or are malformed (the message starts with the invnet-server flag of
  // the option, e.g. "--max_jobs: ", and for a token file names the line); UNAVAILABLE when the
  // address or metrics_address cannot be bound ("address already in use" when another process
  // listens there) or the TLS key and certificate are refused, the repository's codes when it
  // cannot be opened. Damaged repository entries do not fail Start: they are skipped and
  // listed in load_problems().
  static absl::StatusOr<std::unique_ptr<Server>> Start(const ServerOptions& options);
  ~Server();  // Shutdown()

  int port() const { return port_; }
  // The bound port of the metrics exporter; 0 without options.metrics_address.
  int metrics_port() const { return metrics_http_ == nullptr ? 0 : metrics_http_->port(); }
  const std::vector<std::string>& load_problems() const { return load_problems_; }
  std::shared_ptr<grpc::Channel> InProcessChannel();

  // Health NOT_SERVING, cancels running jobs (their records say why), lets in-flight calls
  // finish within options.shutdown_grace, stops. Idempotent.
  void Shutdown();

 private:
  Server() = default;

  ServerOptions options_;
  int port_ = 0;
  std::vector<std::string> load_problems_;
  Authorizer authorizer_;
  // Outlives the gRPC server, whose call observers (rpc_observer.h) record into it.
  std::unique_ptr<ServerMetrics> metrics_;
  std::unique_ptr<ModelRepository> models_;
  std::unique_ptr<DatasetStore> datasets_;
  std::unique_ptr<JobManager> jobs_;
  std::unique_ptr<ReconstructionServiceImpl> reconstruction_;
  std::unique_ptr<TrainingServiceImpl> training_;
  std::unique_ptr<ModelServiceImpl> model_service_;
  std::unique_ptr<DatasetServiceImpl> dataset_service_;
  std::unique_ptr<grpc::Server> grpc_server_;
  // Destroyed first: its scrapes read models_ and jobs_.
  std::unique_ptr<MetricsHttpServer> metrics_http_;
  absl::Mutex shutdown_mu_;
  bool shut_down_ = false;
};

}  // namespace invnet::server

#endif  // INVNET_SERVER_SERVER_H_
