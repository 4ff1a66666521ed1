#include "client/client.h"

#include <algorithm>
#include <chrono>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"
#include "grpcpp/support/client_interceptor.h"
#include "proto/base/option_files.h"
#include "proto/base/request_id.h"
#include "proto/base/status_macros.h"

namespace invnet::client {
namespace {

// 128 random bits in hex: a Train idempotency key no other client will pick.
std::string RandomRequestId() {
  std::random_device random;
  std::string id;
  for (int i = 0; i < 4; ++i) absl::StrAppend(&id, absl::Hex(random(), absl::kZeroPad8));
  return id;
}

// Between a Train that got no answer and its one retry: long enough for a restarting server or
// a dropped connection, short next to a training job.
constexpr absl::Duration kTrainRetryPause = absl::Milliseconds(250);

// Adds the `authorization` metadata to every call of the channel. An interceptor rather than
// call credentials: gRPC sends call credentials only over secure channels, and a token is also
// useful on a plaintext one (behind a TLS-terminating proxy, or on localhost).
class AuthorizationInterceptor : public grpc::experimental::Interceptor {
 public:
  explicit AuthorizationInterceptor(const std::string* value) : value_(value) {}
  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::PRE_SEND_INITIAL_METADATA)) {
      methods->GetSendInitialMetadata()->emplace("authorization", *value_);
    }
    methods->Proceed();
  }

 private:
  const std::string* value_;  // owned by the factory, which the channel keeps
};

class AuthorizationInterceptorFactory
    : public grpc::experimental::ClientInterceptorFactoryInterface {
 public:
  explicit AuthorizationInterceptorFactory(std::string value) : value_(std::move(value)) {}
  grpc::experimental::Interceptor* CreateClientInterceptor(
      grpc::experimental::ClientRpcInfo* /*info*/) override {
    return new AuthorizationInterceptor(&value_);
  }

 private:
  const std::string value_;
};

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> ChannelCredentialsFor(
    const ClientOptions& options) {
  if (!options.use_tls) {
    for (const auto& [name, value] :
         {std::pair<const char*, const std::string*>{"tls_ca_file", &options.tls_ca_file},
          {"tls_cert_file", &options.tls_cert_file},
          {"tls_key_file", &options.tls_key_file}}) {
      if (!value->empty()) {
        return absl::InvalidArgumentError(absl::StrCat(name, ": given without use_tls"));
      }
    }
    return grpc::InsecureChannelCredentials();
  }
  if (options.tls_cert_file.empty() != options.tls_key_file.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(options.tls_cert_file.empty() ? "tls_cert_file" : "tls_key_file",
                     ": a client certificate needs both tls_cert_file and tls_key_file"));
  }
  grpc::SslCredentialsOptions ssl;
  if (!options.tls_ca_file.empty()) {
    INVNET_ASSIGN_OR_RETURN(ssl.pem_root_certs,
                            ReadPemFile("tls_ca_file", options.tls_ca_file, "CERTIFICATE"));
  }
  if (!options.tls_cert_file.empty()) {
    INVNET_ASSIGN_OR_RETURN(ssl.pem_cert_chain,
                            ReadPemFile("tls_cert_file", options.tls_cert_file, "CERTIFICATE"));
    INVNET_ASSIGN_OR_RETURN(ssl.pem_private_key,
                            ReadPemFile("tls_key_file", options.tls_key_file, "PRIVATE KEY"));
  }
  return grpc::SslCredentials(ssl);
}

}  // namespace

InvnetClient::InvnetClient(std::shared_ptr<grpc::ChannelInterface> channel, ClientOptions options)
    : channel_(std::move(channel)),
      options_(options),
      connection_(MakeGrpcConnection(channel_, options_)) {}

InvnetClient::InvnetClient(std::shared_ptr<InvnetConnection> connection, ClientOptions options)
    : options_(options), connection_(std::move(connection)) {}

absl::StatusOr<std::unique_ptr<InvnetClient>> InvnetClient::Connect(absl::string_view target,
                                                                    ClientOptions options) {
  if (target.empty()) return absl::InvalidArgumentError("server address is empty");
  if (options.max_message_bytes <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_message_bytes must be positive, got ", options.max_message_bytes));
  }
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(options.max_message_bytes);
  args.SetMaxSendMessageSize(options.max_message_bytes);
  INVNET_ASSIGN_OR_RETURN(std::shared_ptr<grpc::ChannelCredentials> credentials,
                          ChannelCredentialsFor(options));
  std::vector<std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>> interceptors;
  if (!options.token_file.empty()) {
    INVNET_ASSIGN_OR_RETURN(std::string token, ReadTokenFile("token_file", options.token_file));
    interceptors.push_back(
        std::make_unique<AuthorizationInterceptorFactory>(absl::StrCat("Bearer ", token)));
  }
  std::shared_ptr<grpc::Channel> channel = grpc::experimental::CreateCustomChannelWithInterceptors(
      std::string(target), credentials, args, std::move(interceptors));
  return std::make_unique<InvnetClient>(std::move(channel), options);
}

absl::StatusOr<v1::ReconstructResponse> InvnetClient::Reconstruct(
    const v1::ReconstructRequest& request) const {
  return connection_->Reconstruct(request);
}

absl::StatusOr<v1::ForwardResponse> InvnetClient::Forward(
    const v1::ForwardRequest& request) const {
  return connection_->Forward(request);
}

absl::StatusOr<v1::EstimateResponse> InvnetClient::Estimate(
    const v1::EstimateRequest& request) const {
  return connection_->Estimate(request);
}

absl::StatusOr<v1::DrawTestPairsResponse> InvnetClient::DrawTestPairs(
    const v1::DrawTestPairsRequest& request) const {
  return connection_->DrawTestPairs(request);
}

absl::StatusOr<v1::EvaluateResponse> InvnetClient::Evaluate(
    const v1::EvaluateRequest& request) const {
  return connection_->Evaluate(request);
}

absl::StatusOr<v1::TrainResponse> InvnetClient::Train(const v1::TrainRequest& request) const {
  v1::TrainRequest keyed = request;
  if (keyed.request_id().empty()) keyed.set_request_id(RandomRequestId());
  absl::StatusOr<v1::TrainResponse> response = connection_->Train(keyed);
  if (absl::IsUnavailable(response.status()) || absl::IsDeadlineExceeded(response.status())) {
    absl::SleepFor(kTrainRetryPause);
    response = connection_->Train(keyed);
  }
  return response;
}

absl::StatusOr<v1::GetTrainingJobResponse> InvnetClient::GetTrainingJob(
    const v1::GetTrainingJobRequest& request) const {
  return connection_->GetTrainingJob(request);
}

absl::StatusOr<v1::ListTrainingJobsResponse> InvnetClient::ListTrainingJobs(
    const v1::ListTrainingJobsRequest& request) const {
  return connection_->ListTrainingJobs(request);
}

absl::StatusOr<v1::CancelTrainingJobResponse> InvnetClient::CancelTrainingJob(
    const v1::CancelTrainingJobRequest& request) const {
  return connection_->CancelTrainingJob(request);
}

absl::StatusOr<v1::TrainingJob> InvnetClient::WatchTrainingJob(absl::string_view job_id,
                                                               const JobCallback& on_update) const {
  v1::WatchTrainingJobRequest request;
  request.set_job_id(std::string(job_id));
  v1::TrainingJob last;
  bool received = false;
  const absl::Status status = connection_->WatchTrainingJob(
      request, [&](const v1::WatchTrainingJobResponse& update) {
        received = true;
        if (on_update) on_update(update.job());
        last = update.job();
      });
  if (!status.ok()) return status;
  if (!received) {
    return absl::InternalError(
        absl::StrCat("the server ended the watch of job ", job_id, " without an update"));
  }
  return last;
}

absl::StatusOr<v1::ListModelsResponse> InvnetClient::ListModels(
    const v1::ListModelsRequest& request) const {
  return connection_->ListModels(request);
}

absl::StatusOr<v1::GetModelResponse> InvnetClient::GetModel(
    const v1::GetModelRequest& request) const {
  return connection_->GetModel(request);
}

absl::StatusOr<v1::DeleteModelResponse> InvnetClient::DeleteModel(
    const v1::DeleteModelRequest& request) const {
  return connection_->DeleteModel(request);
}

absl::StatusOr<v1::Dataset> InvnetClient::UploadDataset(absl::string_view name,
                                                        const DenseTensor& samples,
                                                        int64_t rows_per_chunk) const {
  absl::Status valid = samples.ValidateMatrix("samples");
  if (!valid.ok()) return valid;
  if (samples.rows() < 1 || samples.cols() < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("samples: a dataset needs at least one sample of dimension >= 1, got shape ",
                     ShapeToString(samples.shape)));
  }
  if (rows_per_chunk < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("rows_per_chunk must be >= 0, got ", rows_per_chunk));
  }
  const int64_t cols = samples.cols();
  if (rows_per_chunk == 0) {
    rows_per_chunk = std::max<int64_t>(
        1, options_.upload_chunk_bytes / (cols * static_cast<int64_t>(sizeof(float))));
  }

  // The header, then the rows in chunks of rows_per_chunk.
  bool header_sent = false;
  int64_t row = 0;
  auto next = [&](v1::UploadDatasetRequest* message) {
    message->Clear();
    if (!header_sent) {
      header_sent = true;
      v1::DatasetHeader* header = message->mutable_header();
      header->set_name(std::string(name));
      header->set_dim(cols);
      header->set_num_samples(samples.rows());
      return true;
    }
    if (row >= samples.rows()) return false;
    const int64_t rows = std::min(rows_per_chunk, samples.rows() - row);
    v1::Tensor* chunk = message->mutable_chunk();
    chunk->add_shape(rows);
    chunk->add_shape(cols);
    const auto begin = samples.values.begin() + row * cols;
    chunk->mutable_values()->Assign(begin, begin + rows * cols);
    row += rows;
    return true;
  };
  INVNET_ASSIGN_OR_RETURN(v1::UploadDatasetResponse response, connection_->UploadDataset(next));
  return std::move(*response.mutable_dataset());
}

absl::StatusOr<v1::ListDatasetsResponse> InvnetClient::ListDatasets(
    const v1::ListDatasetsRequest& request) const {
  return connection_->ListDatasets(request);
}

absl::StatusOr<v1::DeleteDatasetResponse> InvnetClient::DeleteDataset(
    const v1::DeleteDatasetRequest& request) const {
  return connection_->DeleteDataset(request);
}

absl::StatusOr<InvnetClient::HealthStatus> InvnetClient::Health(absl::string_view service) const {
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(std::string(service));
  absl::StatusOr<grpc::health::v1::HealthCheckResponse> response =
      connection_->Check(request, options_.rpc_timeout, /*wait_for_ready=*/false);
  if (!response.ok()) return response.status();
  return response->status();
}

absl::Status InvnetClient::WaitUntilServing(absl::Duration timeout,
                                            absl::string_view service) const {
  const absl::Time deadline = absl::Now() + timeout;
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(std::string(service));
  absl::Duration backoff = absl::Milliseconds(20);
  std::string last = "no answer";
  while (true) {
    const absl::Duration remaining = deadline - absl::Now();
    if (remaining <= absl::ZeroDuration()) break;
    // wait_for_ready: while the server is not listening yet, the call waits for the channel
    // instead of failing at once, so no time is lost between polls.
    absl::StatusOr<grpc::health::v1::HealthCheckResponse> response = connection_->Check(
        request, std::min(remaining, absl::Seconds(5)), /*wait_for_ready=*/true);
    if (response.ok() && response->status() == grpc::health::v1::HealthCheckResponse::SERVING) {
      return absl::OkStatus();
    }
    last = response.ok()
               ? grpc::health::v1::HealthCheckResponse::ServingStatus_Name(response->status())
               : response.status().ToString();
    absl::SleepFor(std::min(backoff, std::max(deadline - absl::Now(), absl::ZeroDuration())));
    backoff = std::min(backoff * 2, absl::Milliseconds(500));
  }
  return absl::DeadlineExceededError(absl::StrCat(
      "server not SERVING after ", absl::FormatDuration(timeout), " (last answer: ", last, ")"));
}

}  // namespace invnet::client
