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

bool HasDeadline(absl::Duration timeout) {
  return timeout > absl::ZeroDuration() && timeout != absl::InfiniteDuration();
}

void ApplyDeadline(absl::Duration timeout, grpc::ClientContext* context) {
  if (HasDeadline(timeout)) context->set_deadline(absl::ToChronoTime(absl::Now() + timeout));
}

// One unary call: a fresh context with the method's deadline, status converted.
template <typename Response, typename Call>
absl::StatusOr<Response> CallUnary(absl::Duration timeout, const Call& call) {
  grpc::ClientContext context;
  ApplyDeadline(timeout, &context);
  Response response;
  const grpc::Status status = call(&context, &response);
  if (!status.ok()) return FromGrpcStatus(status, context);
  return response;
}

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

absl::Status FromGrpcStatus(const grpc::Status& status) {
  // grpc::StatusCode and absl::StatusCode share the canonical numbering (0..16).
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

absl::Status FromGrpcStatus(const grpc::Status& status, const grpc::ClientContext& context) {
  absl::Status converted = FromGrpcStatus(status);
  if (converted.ok()) return converted;
  const auto& metadata = context.GetServerInitialMetadata();
  const auto id = metadata.find(kRequestIdMetadata);
  if (id != metadata.end()) {
    converted.SetPayload(kRequestIdPayload,
                         absl::Cord(absl::string_view(id->second.data(), id->second.size())));
  }
  return converted;
}

std::string RequestIdOf(const absl::Status& status) {
  const absl::optional<absl::Cord> id = status.GetPayload(kRequestIdPayload);
  return id.has_value() ? std::string(*id) : "";
}

InvnetClient::InvnetClient(std::shared_ptr<grpc::ChannelInterface> channel, ClientOptions options)
    : channel_(std::move(channel)),
      options_(options),
      reconstruction_(v1::ReconstructionService::NewStub(channel_)),
      training_(v1::TrainingService::NewStub(channel_)),
      models_(v1::ModelService::NewStub(channel_)),
      datasets_(v1::DatasetService::NewStub(channel_)),
      health_(grpc::health::v1::Health::NewStub(channel_)) {}

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
  return CallUnary<v1::ReconstructResponse>(
      options_.compute_timeout, [&](grpc::ClientContext* context, v1::ReconstructResponse* out) {
        return reconstruction_->Reconstruct(context, request, out);
      });
}

absl::StatusOr<v1::ForwardResponse> InvnetClient::Forward(const v1::ForwardRequest& request) const {
  return CallUnary<v1::ForwardResponse>(
      options_.compute_timeout, [&](grpc::ClientContext* context, v1::ForwardResponse* out) {
        return reconstruction_->Forward(context, request, out);
      });
}

absl::StatusOr<v1::EstimateResponse> InvnetClient::Estimate(
    const v1::EstimateRequest& request) const {
  return CallUnary<v1::EstimateResponse>(
      options_.compute_timeout, [&](grpc::ClientContext* context, v1::EstimateResponse* out) {
        return reconstruction_->Estimate(context, request, out);
      });
}

absl::StatusOr<v1::DrawTestPairsResponse> InvnetClient::DrawTestPairs(
    const v1::DrawTestPairsRequest& request) const {
  return CallUnary<v1::DrawTestPairsResponse>(
      options_.compute_timeout, [&](grpc::ClientContext* context, v1::DrawTestPairsResponse* out) {
        return reconstruction_->DrawTestPairs(context, request, out);
      });
}

absl::StatusOr<v1::EvaluateResponse> InvnetClient::Evaluate(
    const v1::EvaluateRequest& request) const {
  return CallUnary<v1::EvaluateResponse>(
      options_.compute_timeout, [&](grpc::ClientContext* context, v1::EvaluateResponse* out) {
        return reconstruction_->Evaluate(context, request, out);
      });
}

absl::StatusOr<v1::TrainResponse> InvnetClient::Train(const v1::TrainRequest& request) const {
  v1::TrainRequest keyed = request;
  if (keyed.request_id().empty()) keyed.set_request_id(RandomRequestId());
  auto call = [&] {
    return CallUnary<v1::TrainResponse>(options_.rpc_timeout,
                                        [&](grpc::ClientContext* context, v1::TrainResponse* out) {
                                          return training_->Train(context, keyed, out);
                                        });
  };
  absl::StatusOr<v1::TrainResponse> response = call();
  if (absl::IsUnavailable(response.status()) || absl::IsDeadlineExceeded(response.status())) {
    absl::SleepFor(kTrainRetryPause);
    response = call();
  }
  return response;
}

absl::StatusOr<v1::GetTrainingJobResponse> InvnetClient::GetTrainingJob(
    const v1::GetTrainingJobRequest& request) const {
  return CallUnary<v1::GetTrainingJobResponse>(
      options_.rpc_timeout, [&](grpc::ClientContext* context, v1::GetTrainingJobResponse* out) {
        return training_->GetTrainingJob(context, request, out);
      });
}

absl::StatusOr<v1::ListTrainingJobsResponse> InvnetClient::ListTrainingJobs(
    const v1::ListTrainingJobsRequest& request) const {
  return CallUnary<v1::ListTrainingJobsResponse>(
      options_.rpc_timeout, [&](grpc::ClientContext* context, v1::ListTrainingJobsResponse* out) {
        return training_->ListTrainingJobs(context, request, out);
      });
}

absl::StatusOr<v1::CancelTrainingJobResponse> InvnetClient::CancelTrainingJob(
    const v1::CancelTrainingJobRequest& request) const {
  return CallUnary<v1::CancelTrainingJobResponse>(
      options_.rpc_timeout, [&](grpc::ClientContext* context, v1::CancelTrainingJobResponse* out) {
        return training_->CancelTrainingJob(context, request, out);
      });
}

absl::StatusOr<v1::TrainingJob> InvnetClient::WatchTrainingJob(absl::string_view job_id,
                                                               const JobCallback& on_update) const {
  grpc::ClientContext context;
  ApplyDeadline(options_.watch_timeout, &context);
  v1::WatchTrainingJobRequest request;
  request.set_job_id(std::string(job_id));
  std::unique_ptr<grpc::ClientReader<v1::WatchTrainingJobResponse>> reader =
      training_->WatchTrainingJob(&context, request);
  v1::WatchTrainingJobResponse update;
  v1::TrainingJob last;
  bool received = false;
  while (reader->Read(&update)) {
    received = true;
    if (on_update) on_update(update.job());
    last = std::move(*update.mutable_job());
  }
  const grpc::Status status = reader->Finish();
  if (!status.ok()) return FromGrpcStatus(status, context);
  if (!received) {
    return absl::InternalError(
        absl::StrCat("the server ended the watch of job ", job_id, " without an update"));
  }
  return last;
}

absl::StatusOr<v1::ListModelsResponse> InvnetClient::ListModels(
    const v1::ListModelsRequest& request) const {
  return CallUnary<v1::ListModelsResponse>(
      options_.rpc_timeout, [&](grpc::ClientContext* context, v1::ListModelsResponse* out) {
        return models_->ListModels(context, request, out);
      });
}

absl::StatusOr<v1::GetModelResponse> InvnetClient::GetModel(
    const v1::GetModelRequest& request) const {
  return CallUnary<v1::GetModelResponse>(
      options_.rpc_timeout, [&](grpc::ClientContext* context, v1::GetModelResponse* out) {
        return models_->GetModel(context, request, out);
      });
}

absl::StatusOr<v1::DeleteModelResponse> InvnetClient::DeleteModel(
    const v1::DeleteModelRequest& request) const {
  return CallUnary<v1::DeleteModelResponse>(
      options_.rpc_timeout, [&](grpc::ClientContext* context, v1::DeleteModelResponse* out) {
        return models_->DeleteModel(context, request, out);
      });
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

  grpc::ClientContext context;
  ApplyDeadline(options_.upload_timeout, &context);
  v1::UploadDatasetResponse response;
  std::unique_ptr<grpc::ClientWriter<v1::UploadDatasetRequest>> writer =
      datasets_->UploadDataset(&context, &response);

  v1::UploadDatasetRequest message;
  v1::DatasetHeader* header = message.mutable_header();
  header->set_name(std::string(name));
  header->set_dim(cols);
  header->set_num_samples(samples.rows());
  // A failed Write means the server has already ended the call (for example ALREADY_EXISTS
  // after the header): stop sending and let Finish() report why.
  bool sent_all = writer->Write(message);
  for (int64_t row = 0; sent_all && row < samples.rows(); row += rows_per_chunk) {
    const int64_t rows = std::min(rows_per_chunk, samples.rows() - row);
    v1::Tensor* chunk = message.mutable_chunk();
    chunk->clear_shape();
    chunk->add_shape(rows);
    chunk->add_shape(cols);
    const auto begin = samples.values.begin() + row * cols;
    chunk->mutable_values()->Assign(begin, begin + rows * cols);
    sent_all = writer->Write(message);
  }
  if (sent_all) writer->WritesDone();
  const grpc::Status status = writer->Finish();
  if (!status.ok()) return FromGrpcStatus(status, context);
  if (!sent_all) {
    return absl::UnknownError(absl::StrCat("upload of dataset ", name,
                                           ": the stream closed before every chunk was sent"));
  }
  return std::move(*response.mutable_dataset());
}

absl::StatusOr<v1::ListDatasetsResponse> InvnetClient::ListDatasets(
    const v1::ListDatasetsRequest& request) const {
  return CallUnary<v1::ListDatasetsResponse>(
      options_.rpc_timeout, [&](grpc::ClientContext* context, v1::ListDatasetsResponse* out) {
        return datasets_->ListDatasets(context, request, out);
      });
}

absl::StatusOr<v1::DeleteDatasetResponse> InvnetClient::DeleteDataset(
    const v1::DeleteDatasetRequest& request) const {
  return CallUnary<v1::DeleteDatasetResponse>(
      options_.rpc_timeout, [&](grpc::ClientContext* context, v1::DeleteDatasetResponse* out) {
        return datasets_->DeleteDataset(context, request, out);
      });
}

absl::StatusOr<InvnetClient::HealthStatus> InvnetClient::Health(absl::string_view service) const {
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(std::string(service));
  absl::StatusOr<grpc::health::v1::HealthCheckResponse> response =
      CallUnary<grpc::health::v1::HealthCheckResponse>(
          options_.rpc_timeout,
          [&](grpc::ClientContext* context, grpc::health::v1::HealthCheckResponse* out) {
            return health_->Check(context, request, out);
          });
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
    grpc::ClientContext context;
    // wait_for_ready: while the server is not listening yet, the call waits for the channel
    // instead of failing at once, so no time is lost between polls.
    context.set_wait_for_ready(true);
    context.set_deadline(absl::ToChronoTime(absl::Now() + std::min(remaining, absl::Seconds(5))));
    grpc::health::v1::HealthCheckResponse response;
    const grpc::Status status = health_->Check(&context, request, &response);
    if (status.ok() && response.status() == grpc::health::v1::HealthCheckResponse::SERVING) {
      return absl::OkStatus();
    }
    last = status.ok()
               ? grpc::health::v1::HealthCheckResponse::ServingStatus_Name(response.status())
               : FromGrpcStatus(status).ToString();
    absl::SleepFor(std::min(backoff, std::max(deadline - absl::Now(), absl::ZeroDuration())));
    backoff = std::min(backoff * 2, absl::Milliseconds(500));
  }
  return absl::DeadlineExceededError(absl::StrCat(
      "server not SERVING after ", absl::FormatDuration(timeout), " (last answer: ", last, ")"));
}

}  // namespace invnet::client
