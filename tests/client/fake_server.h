#ifndef INVNET_TESTS_CLIENT_FAKE_SERVER_H_
#define INVNET_TESTS_CLIENT_FAKE_SERVER_H_

// A fake invnet server for what goes over the wire: minimal implementations of the four
// invnet.v1 services and grpc.health.v1 Check over canned, inspectable state, served on
// 127.0.0.1:<free port> and reachable in-process too. Used by client_test (deadlines, streams,
// status conversion), the load generator and `invnet bench` (they drive the channel), and the
// `invnet` binary (cli_binary_test). What the CLI and the experiment do with the answers is
// tested over a gmock connection instead (mock_connection.h).
//
// Behaviour (each RPC first records its call and the deadline it arrived with, then returns
// `fail_with` if that is set):
//   Reconstruct  x = y / 2; iterations[i] = i + 1; converged[i] = (i != 1); error_bound[i] =
//                1e-6 * (i + 1); NOT_FOUND unless the model is in `models`
//   Forward      2 * x;  Estimate  posterior_mean 0.5 y, posterior_std 1, map y, wiener 0.25 y,
//                pseudo_inverse y (those asked for; all when none), map_objective[i] = i
//   DrawTestPairs  [count, n] signals x[i][j] = FakeSignal(seed, i, j) and [count, m]
//                measurements y[i][k] = FakeSignal(seed + 1, i, k), n and m from the model's
//                latest version; NOT_FOUND unless the model is in `models`
//   Train        job "job-1" QUEUED for the request's model
//   Get/Cancel   look up `jobs` (NOT_FOUND); Cancel makes a queued or running job CANCELLED
//                (of a finished job: FAILED_PRECONDITION)
//   Watch        streams `watch_updates` (NOT_FOUND when empty; see hold_watch_open)
//   Models/Datasets  list, get and delete over `models` / `datasets`
//   UploadDataset   records every message; ALREADY_EXISTS right after the header when the name
//                   is in `datasets`; otherwise appends the new dataset
//   Health       `health` for "" and the four service names, NOT_FOUND for others
//   Evaluate     not implemented (UNIMPLEMENTED)
// With `block_until_cancelled`, unary RPCs wait until the client gives up (deadline) instead.
//
// Thread-safety: the state is guarded by `mu`; tests lock it (or use the accessors) while the
// server may be handling calls.

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/server.h"
#include "grpcpp/server_context.h"
#include "invnet/v1/dataset_service.grpc.pb.h"
#include "invnet/v1/model_service.grpc.pb.h"
#include "invnet/v1/reconstruction_service.grpc.pb.h"
#include "invnet/v1/training_service.grpc.pb.h"
#include "tests/client/canned_messages.h"

namespace invnet::client::testing {

struct FakeState {
  absl::Mutex mu;

  // Canned state.
  std::vector<v1::Model> models ABSL_GUARDED_BY(mu);
  std::vector<v1::TrainingJob> jobs ABSL_GUARDED_BY(mu);
  std::vector<v1::TrainingJob> watch_updates ABSL_GUARDED_BY(mu);
  std::vector<v1::Dataset> datasets ABSL_GUARDED_BY(mu);
  grpc::health::v1::HealthCheckResponse::ServingStatus health ABSL_GUARDED_BY(mu) =
      grpc::health::v1::HealthCheckResponse::SERVING;
  std::optional<grpc::Status> fail_with ABSL_GUARDED_BY(mu);
  bool block_until_cancelled ABSL_GUARDED_BY(mu) = false;
  // Every unary RPC waits this long (after recording the call) before answering.
  absl::Duration delay ABSL_GUARDED_BY(mu) = absl::ZeroDuration();
  // Watch keeps the stream open after `watch_updates` until the client goes away (a job still
  // running), at most 20 s.
  bool hold_watch_open ABSL_GUARDED_BY(mu) = false;

  // Recordings: method names in call order, the time left until each method's last deadline
  // (absl::InfiniteDuration() when the call had none), and the last requests.
  std::vector<std::string> calls ABSL_GUARDED_BY(mu);
  std::map<std::string, absl::Duration> time_left ABSL_GUARDED_BY(mu);
  v1::ReconstructRequest reconstruct ABSL_GUARDED_BY(mu);
  v1::DrawTestPairsRequest draw ABSL_GUARDED_BY(mu);
  std::vector<v1::UploadDatasetRequest> upload_messages ABSL_GUARDED_BY(mu);
};

class FakeServer {
 public:
  // Starts the server; aborts the test binary if it cannot listen.
  FakeServer();
  ~FakeServer();

  FakeState& state() { return *state_; }
  // "127.0.0.1:<port>".
  const std::string& target() const { return target_; }
  std::shared_ptr<grpc::Channel> InProcessChannel();

  // Convenience accessors (take the lock).
  std::vector<std::string> calls();
  absl::Duration time_left(const std::string& method);
  void FailWith(grpc::Status status);

 private:
  std::unique_ptr<FakeState> state_;
  std::vector<std::unique_ptr<grpc::Service>> services_;
  std::unique_ptr<grpc::Server> server_;
  std::string target_;
};

// The fake's deterministic "random" values in [-2, 2) for DrawTestPairs.
float FakeSignal(uint64_t seed, int64_t row, int64_t col);

}  // namespace invnet::client::testing

#endif  // INVNET_TESTS_CLIENT_FAKE_SERVER_H_
