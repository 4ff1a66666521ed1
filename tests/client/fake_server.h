#ifndef INVNET_TESTS_CLIENT_FAKE_SERVER_H_
#define INVNET_TESTS_CLIENT_FAKE_SERVER_H_

// A fake invnet server: minimal implementations of the four invnet.v1 services and
// grpc.health.v1 Check over canned, inspectable state, served on 127.0.0.1:<free port> and
// reachable in-process too. For what goes over the wire: client_test (deadlines, streams, status
// conversion), the load generator and `invnet bench`, the `invnet` binary (cli_binary_test); and
// for `invnet experiment`'s schedule of training jobs (experiment_test, simulate_training). The
// CLI's own logic is tested over a gmock connection instead (mock_connection.h).
//
// Default behaviour (each RPC first records its call and the deadline it arrived with, then
// returns `fail_with` if that is set):
//   Reconstruct  x = s * y, s = reconstruct_scale[model] (default 0.5); iterations[i] = i + 1;
//                converged[i] = (i != 1); error_bound[i] = 1e-6 * (i + 1); NOT_FOUND unless
//                the model is in `models`; with posterior_std, std[i][j] = 0.1 * (i + 1)
//                except row 2 (NaN: undefined), method "laplace-divergence", or
//                FAILED_PRECONDITION when the latest version's loss is set and is neither
//                divergence nor log-det
//   Forward      2 * x (map FORWARD_MAP_OPERATOR or NORMAL_OPERATOR: 3 * x);  Estimate  posterior_mean 0.5 y, posterior_std 1, map y, wiener 0.25 y,
//                pseudo_inverse y (those asked for; all when none), map_objective[i] = i;
//                FAILED_PRECONDITION when the model's latest version has a dataset problem
//   DrawTestPairs  [count, n] signals x[i][j] = FakeSignal(seed, i, j) and [count, m]
//                measurements y[i][k] = FakeSignal(seed + 1, i, k), n and m from the model's
//                latest version; NOT_FOUND unless the model is in `models`
//   Evaluate     canned scores: references posterior_mean, map, wiener, pseudo_inverse (r = 0..3:
//                mse 0.5 + 0.1 r, mse_ratio_to_pm 1 + 0.2 r, rms_to_pm 0.05 r, rms_to_map
//                0.3 - 0.05 r; the posterior mean's mean_posterior_std 1), none when the first
//                model's latest version has a dataset problem; model k of the request: mse 1 + k,
//                mse_ratio_to_pm 2 + k, rms_to_pm 0.25 + k, rms_to_map 0.75 + k (those three
//                only with references), forward_error
//                0.01 (k + 1), converged 0.975, iterations 20.5, and with posterior_std (losses
//                as for Reconstruct) method "laplace-divergence", mean std 0.5 + k, ratio mean
//                0.6 + k, median 2.1, q10 0.57, q90 3.63, undefined 0.025; other metrics NaN
//   Train        job "job-1" QUEUED for the request's model; the request is recorded (with
//                `simulate_training`, see below)
//   Get/Cancel   look up `jobs` (NOT_FOUND); Cancel makes a queued or running job CANCELLED
//                (of a finished job: FAILED_PRECONDITION)
//   Watch        streams `watch_updates` (NOT_FOUND when empty; see hold_watch_open)
//   Models/Datasets  list, get and delete over `models` / `datasets`
//   UploadDataset   records every message; ALREADY_EXISTS right after the header when the name
//                   is in `datasets`; otherwise appends the new dataset
//   Health       `health` for "" and the four service names, NOT_FOUND for others
// With `block_until_cancelled`, unary RPCs wait until the client gives up (deadline) instead.
//
// Thread-safety: the state is guarded by `mu`; tests lock it (or use the accessors) while the
// server may be handling calls.

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/server.h"
#include "tests/client/canned_messages.h"
#include "grpcpp/server_context.h"
#include "invnet/v1/dataset_service.grpc.pb.h"
#include "invnet/v1/model_service.grpc.pb.h"
#include "invnet/v1/reconstruction_service.grpc.pb.h"
#include "invnet/v1/training_service.grpc.pb.h"

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
  // Per model: the factor Reconstruct multiplies y by (0.5 when absent).
  std::map<std::string, float> reconstruct_scale ABSL_GUARDED_BY(mu);

  // Simulated training (off by default). Train gives every job its own id ("job-<k>") and the
  // state RUNNING, and refuses with RESOURCE_EXHAUSTED while `max_jobs` simulated jobs are
  // unfinished. Watching such a job streams two RUNNING updates (half way, with a validation;
  // then done) and a final one: FAILED with "simulated failure" when the model is in
  // `failing_models`, else SUCCEEDED after publishing the next version of the model into
  // `models` (the request's problem, architecture dim n and measurement_dim m from its operator,
  // training with the request's loss and its default target space, metrics train_seconds = k,
  // and curves "step", "loss", "val_step", "val_mse", "val_forward_error"). The slot is freed
  // before the final update is sent.
  bool simulate_training ABSL_GUARDED_BY(mu) = false;
  int max_jobs ABSL_GUARDED_BY(mu) = 2;
  std::set<std::string> failing_models ABSL_GUARDED_BY(mu);
  int train_refusals ABSL_GUARDED_BY(mu) = 0;  // Train calls answered RESOURCE_EXHAUSTED
  int most_running ABSL_GUARDED_BY(mu) = 0;    // the most unfinished simulated jobs at once

  // Recordings: method names in call order, the time left until each method's last deadline
  // (absl::InfiniteDuration() when the call had none), and the last requests.
  std::vector<std::string> calls ABSL_GUARDED_BY(mu);
  std::map<std::string, absl::Duration> time_left ABSL_GUARDED_BY(mu);
  v1::ReconstructRequest reconstruct ABSL_GUARDED_BY(mu);
  std::vector<v1::TrainRequest> train_requests ABSL_GUARDED_BY(mu);  // every accepted Train
  v1::DrawTestPairsRequest draw ABSL_GUARDED_BY(mu);
  v1::EvaluateRequest evaluate ABSL_GUARDED_BY(mu);
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
