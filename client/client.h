#ifndef INVNET_CLIENT_CLIENT_H_
#define INVNET_CLIENT_CLIENT_H_

// InvnetClient: a thin, torch-free client for the invnet gRPC services.
//
// One method per RPC of ReconstructionService, TrainingService, ModelService and
// DatasetService, taking and returning the generated messages, plus conveniences: Health
// (grpc.health.v1 Check), WaitUntilServing, WatchTrainingJob (consumes the server stream) and
// UploadDataset (splits a matrix into chunks).
//
// Errors: every method returns the server's status as an absl::Status with the same code and
// message (FromGrpcStatus), so the codes are those the .proto files and the server document:
// INVALID_ARGUMENT (bad input), NOT_FOUND (unknown model/version/job/dataset), ALREADY_EXISTS,
// FAILED_PRECONDITION, RESOURCE_EXHAUSTED, UNAVAILABLE (server unreachable or shutting down, or
// the TLS handshake failed), UNAUTHENTICATED (no or an unknown bearer token), PERMISSION_DENIED
// (a token without the scope the call needs),
// DEADLINE_EXCEEDED (the per-method deadline of ClientOptions passed), INTERNAL. Where a method
// checks its arguments before sending, it says so; those checks return INVALID_ARGUMENT.
//
// Every call goes through an InvnetConnection (client/connection.h): the gRPC one over a
// channel, or in tests a gmock one, so that the logic here and everything built on it can be
// tested without a server.
//
// Thread-safety: all methods are const and may be called concurrently from any thread; each
// call uses its own grpc::ClientContext. The channel may be shared with other clients.
// Callbacks (WatchTrainingJob) run on the calling thread.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "client/connection.h"
#include "client/dense_tensor.h"
#include "grpc/health/v1/health.pb.h"
#include "grpcpp/channel.h"
#include "invnet/v1/dataset_service.pb.h"
#include "invnet/v1/model_service.pb.h"
#include "invnet/v1/reconstruction_service.pb.h"
#include "invnet/v1/training_service.pb.h"

namespace invnet::client {

class InvnetClient {
 public:
  using HealthStatus = grpc::health::v1::HealthCheckResponse::ServingStatus;
  using JobCallback = std::function<void(const v1::TrainingJob&)>;

  // Uses `channel` as it is (tests pass an in-process channel), through MakeGrpcConnection.
  // Precondition: channel != null.
  explicit InvnetClient(std::shared_ptr<grpc::ChannelInterface> channel,
                        ClientOptions options = {});
  // Every call through `connection` (tests: a mock); channel() is null. Precondition:
  // connection != null.
  explicit InvnetClient(std::shared_ptr<InvnetConnection> connection, ClientOptions options = {});

  // A channel to `target` ("host:port", or any gRPC target URI) whose send and receive limits
  // are options.max_message_bytes: TLS when options.use_tls (with the CA and client certificate
  // files it names), plaintext otherwise, and with the bearer token of options.token_file on
  // every call. The channel connects lazily, so an unreachable server, or one that refuses the
  // TLS handshake, shows up as UNAVAILABLE on the first call. INVALID_ARGUMENT when `target` is
  // empty, max_message_bytes is not positive, a tls_* file is given without use_tls, only one
  // of tls_cert_file and tls_key_file is given, or a file cannot be read or is malformed (the
  // message starts with the option's name).
  static absl::StatusOr<std::unique_ptr<InvnetClient>> Connect(absl::string_view target,
                                                               ClientOptions options = {});

  const ClientOptions& options() const { return options_; }
  // The channel of a client built over one (the load generator drives it directly), else null.
  const std::shared_ptr<grpc::ChannelInterface>& channel() const { return channel_; }

  // ReconstructionService (deadline: compute_timeout).
  absl::StatusOr<v1::ReconstructResponse> Reconstruct(const v1::ReconstructRequest& request) const;
  absl::StatusOr<v1::ForwardResponse> Forward(const v1::ForwardRequest& request) const;
  absl::StatusOr<v1::EstimateResponse> Estimate(const v1::EstimateRequest& request) const;
  absl::StatusOr<v1::DrawTestPairsResponse> DrawTestPairs(
      const v1::DrawTestPairsRequest& request) const;
  absl::StatusOr<v1::EvaluateResponse> Evaluate(const v1::EvaluateRequest& request) const;

  // TrainingService (deadline: rpc_timeout).
  // Train gives a request without `request_id` a random one, and asks once more with the same
  // id when the first answer is UNAVAILABLE or DEADLINE_EXCEEDED (the job may have started):
  // the server then returns the job the first call started, so a retry never trains twice.
  absl::StatusOr<v1::TrainResponse> Train(const v1::TrainRequest& request) const;
  absl::StatusOr<v1::GetTrainingJobResponse> GetTrainingJob(
      const v1::GetTrainingJobRequest& request) const;
  absl::StatusOr<v1::ListTrainingJobsResponse> ListTrainingJobs(
      const v1::ListTrainingJobsRequest& request = {}) const;
  absl::StatusOr<v1::CancelTrainingJobResponse> CancelTrainingJob(
      const v1::CancelTrainingJobRequest& request) const;

  // Follows job `job_id` until the server ends the stream (deadline: watch_timeout), calling
  // `on_update` (if set) with every update in order, and returns the last one, which for a
  // finished job carries its final state. The server's error when the stream fails
  // (NOT_FOUND for an unknown job, UNAVAILABLE when the server goes away, ...); INTERNAL when
  // the server ends the stream successfully without sending any update.
  absl::StatusOr<v1::TrainingJob> WatchTrainingJob(absl::string_view job_id,
                                                   const JobCallback& on_update = nullptr) const;

  // ModelService (deadline: rpc_timeout).
  absl::StatusOr<v1::ListModelsResponse> ListModels(
      const v1::ListModelsRequest& request = {}) const;
  absl::StatusOr<v1::GetModelResponse> GetModel(const v1::GetModelRequest& request) const;
  absl::StatusOr<v1::DeleteModelResponse> DeleteModel(const v1::DeleteModelRequest& request) const;

  // DatasetService (deadline: rpc_timeout, upload_timeout for the upload).
  //
  // Streams a header {name, dim = cols, num_samples = rows} and then the rows of `samples` in
  // chunks of `rows_per_chunk` rows (0: as many as fit in options().upload_chunk_bytes), and
  // returns the dataset the server created. Checks before sending: `samples` must be a valid
  // (finite) [rows >= 1, cols >= 1] matrix and rows_per_chunk >= 0, else INVALID_ARGUMENT.
  // The server's error otherwise (ALREADY_EXISTS, RESOURCE_EXHAUSTED, ...); when the server
  // rejects the stream early, the remaining chunks are not sent.
  absl::StatusOr<v1::Dataset> UploadDataset(absl::string_view name, const DenseTensor& samples,
                                            int64_t rows_per_chunk = 0) const;
  absl::StatusOr<v1::ListDatasetsResponse> ListDatasets(
      const v1::ListDatasetsRequest& request = {}) const;
  absl::StatusOr<v1::DeleteDatasetResponse> DeleteDataset(
      const v1::DeleteDatasetRequest& request) const;

  // grpc.health.v1.Health/Check for `service` ("" = the whole server), deadline rpc_timeout.
  // The server's status: NOT_FOUND for an unknown service, UNAVAILABLE when unreachable, ...
  absl::StatusOr<HealthStatus> Health(absl::string_view service = "") const;

  // Polls Health(service) until it answers SERVING or `timeout` passes (for scripts and tests
  // that start a server). DEADLINE_EXCEEDED naming the last answer or error when it never did.
  absl::Status WaitUntilServing(absl::Duration timeout, absl::string_view service = "") const;

 private:
  std::shared_ptr<grpc::ChannelInterface> channel_;
  ClientOptions options_;
  std::shared_ptr<InvnetConnection> connection_;
};

}  // namespace invnet::client

#endif  // INVNET_CLIENT_CLIENT_H_
