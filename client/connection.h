#ifndef INVNET_CLIENT_CONNECTION_H_
#define INVNET_CLIENT_CONNECTION_H_

// InvnetConnection: the seam under InvnetClient (in the manner of google-cloud-cpp's
// *Connection classes). One virtual method per RPC of the four invnet.v1 services and the
// health check, each one call on the wire and nothing more: requests go out as given, answers
// and statuses come back as they arrived. What a client adds on top (Train's idempotency key and
// retry, UploadDataset's chunking, WatchTrainingJob's "the stream ended without an update")
// lives in InvnetClient, so tests can drive it, and everything built on it (the CLI, the
// experiment), through a gmock connection (tests/client/mock_connection.h) without a server.
//
// MakeGrpcConnection is the real one: every call gets a fresh grpc::ClientContext with the
// method's deadline of ClientOptions, and a failed call's status carries the server's request
// id (FromGrpcStatus). Thread-safety: implementations must allow concurrent calls from any
// thread; callbacks run on the calling thread.

#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpc/health/v1/health.pb.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"
#include "grpcpp/support/status.h"
#include "invnet/v1/dataset_service.pb.h"
#include "invnet/v1/model_service.pb.h"
#include "invnet/v1/reconstruction_service.pb.h"
#include "invnet/v1/training_service.pb.h"

namespace invnet::client {

// Per-method deadlines, channel limits and credentials. A deadline of absl::InfiniteDuration() (or
// any non-positive duration) means none.
struct ClientOptions {
  // Management and health calls: Get/List/Delete/Cancel, Train (which returns at once), Health.
  absl::Duration rpc_timeout = absl::Seconds(30);
  // Reconstruct, Forward, Estimate, DrawTestPairs, Evaluate: a large batch or a slow solver
  // legitimately takes minutes.
  absl::Duration compute_timeout = absl::Minutes(10);
  // The whole UploadDataset stream.
  absl::Duration upload_timeout = absl::Minutes(30);
  // WatchTrainingJob: a training run may take hours, so none by default.
  absl::Duration watch_timeout = absl::InfiniteDuration();
  // Largest message Connect() lets the channel send or receive (gRPC's default is 4 MiB, too
  // small for a batch of high-dimensional reconstructions).
  int max_message_bytes = 256 * 1024 * 1024;
  // Rows per UploadDataset chunk when the caller passes 0: at most this many bytes of values
  // per chunk, so every message stays far below the message limits.
  int64_t upload_chunk_bytes = 4 * 1024 * 1024;

  // Credentials, used by Connect() (a channel passed to the constructor carries its own).
  // use_tls: a TLS channel that verifies the server's certificate; otherwise plaintext.
  bool use_tls = false;
  // PEM root certificates that the server's certificate must chain to ("": the system's).
  std::string tls_ca_file;
  // PEM client certificate chain and its private key, for servers that require mutual TLS;
  // both or neither.
  std::string tls_cert_file;
  std::string tls_key_file;
  // A file holding a bearer token (the token alone; surrounding whitespace is ignored), sent as
  // `authorization: Bearer <token>` with every call ("": none). Without TLS it travels in the
  // clear.
  std::string token_file;
};

// grpc::Status -> absl::Status: the same code and message (the one place they are converted).
absl::Status FromGrpcStatus(const grpc::Status& status);
// The same, plus the request id the server answered with (its `x-request-id` initial metadata)
// as the payload kRequestIdPayload (proto/base/request_id.h), so that an error can be found in the
// server's log. Precondition: the call of `context` has finished.
absl::Status FromGrpcStatus(const grpc::Status& status, const grpc::ClientContext& context);
// The request id FromGrpcStatus attached, or "".
std::string RequestIdOf(const absl::Status& status);

class InvnetConnection {
 public:
  virtual ~InvnetConnection() = default;

  // ReconstructionService.
  virtual absl::StatusOr<v1::ReconstructResponse> Reconstruct(
      const v1::ReconstructRequest& request) = 0;
  virtual absl::StatusOr<v1::ForwardResponse> Forward(const v1::ForwardRequest& request) = 0;
  virtual absl::StatusOr<v1::EstimateResponse> Estimate(const v1::EstimateRequest& request) = 0;
  virtual absl::StatusOr<v1::DrawTestPairsResponse> DrawTestPairs(
      const v1::DrawTestPairsRequest& request) = 0;
  virtual absl::StatusOr<v1::EvaluateResponse> Evaluate(const v1::EvaluateRequest& request) = 0;

  // TrainingService. WatchTrainingJob reads the server stream to its end, calling `on_update`
  // with every message in order, and returns the stream's final status.
  virtual absl::StatusOr<v1::TrainResponse> Train(const v1::TrainRequest& request) = 0;
  virtual absl::StatusOr<v1::GetTrainingJobResponse> GetTrainingJob(
      const v1::GetTrainingJobRequest& request) = 0;
  virtual absl::StatusOr<v1::ListTrainingJobsResponse> ListTrainingJobs(
      const v1::ListTrainingJobsRequest& request) = 0;
  virtual absl::StatusOr<v1::CancelTrainingJobResponse> CancelTrainingJob(
      const v1::CancelTrainingJobRequest& request) = 0;
  virtual absl::Status WatchTrainingJob(
      const v1::WatchTrainingJobRequest& request,
      const std::function<void(const v1::WatchTrainingJobResponse&)>& on_update) = 0;

  // ModelService.
  virtual absl::StatusOr<v1::ListModelsResponse> ListModels(
      const v1::ListModelsRequest& request) = 0;
  virtual absl::StatusOr<v1::GetModelResponse> GetModel(const v1::GetModelRequest& request) = 0;
  virtual absl::StatusOr<v1::DeleteModelResponse> DeleteModel(
      const v1::DeleteModelRequest& request) = 0;

  // DatasetService. UploadDataset sends the messages `next` fills in, in order, until it
  // returns false, or until the server has ended the call (a failed write: the rest is not
  // sent), and returns the server's answer; UNKNOWN when the server answered OK to a stream
  // that was cut short.
  virtual absl::StatusOr<v1::UploadDatasetResponse> UploadDataset(
      const std::function<bool(v1::UploadDatasetRequest*)>& next) = 0;
  virtual absl::StatusOr<v1::ListDatasetsResponse> ListDatasets(
      const v1::ListDatasetsRequest& request) = 0;
  virtual absl::StatusOr<v1::DeleteDatasetResponse> DeleteDataset(
      const v1::DeleteDatasetRequest& request) = 0;

  // grpc.health.v1.Health/Check with deadline `timeout` (none when not positive or infinite);
  // with `wait_for_ready`, a call made while the server is not listening yet waits for the
  // channel instead of failing at once.
  virtual absl::StatusOr<grpc::health::v1::HealthCheckResponse> Check(
      const grpc::health::v1::HealthCheckRequest& request, absl::Duration timeout,
      bool wait_for_ready) = 0;
};

// The connection over `channel` with the deadlines of `options` (its credentials are the
// channel's own). Precondition: channel != null.
std::shared_ptr<InvnetConnection> MakeGrpcConnection(
    std::shared_ptr<grpc::ChannelInterface> channel, const ClientOptions& options);

}  // namespace invnet::client

#endif  // INVNET_CLIENT_CONNECTION_H_
