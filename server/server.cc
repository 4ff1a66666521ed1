#include "server/server.h"

#include <unistd.h>

#include <algorithm>
#include <thread>
#include <vector>

#include <ATen/Parallel.h>
#include <glog/logging.h>
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/resource_quota.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "proto/base/option_files.h"
#include "proto/base/status_macros.h"
#include "server/listen_address.h"
#include "server/rpc_observer.h"

namespace invnet::server {
namespace {

// Polling threads of the synchronous server at most (see the measurements in Start).
constexpr int kMaxPollers = 32;
// Concurrent calls other than Watch streams and queued Reconstruct requests (Forward,
// Estimate, uploads, listings) that may hold a thread at once before gRPC refuses more.
constexpr int kOtherConcurrentCalls = 256;

int MaxServerThreads(const ServerOptions& options) {
  const int64_t threads = int64_t{kMaxPollers} + options.max_watch_streams +
                          options.batching.max_queued_requests + kOtherConcurrentCalls;
  return static_cast<int>(std::min<int64_t>(threads, 1 << 20));
}

constexpr const char* kServiceNames[] = {
    "invnet.v1.ReconstructionService", "invnet.v1.TrainingService", "invnet.v1.ModelService",
    "invnet.v1.DatasetService"};

void SetHealth(grpc::Server& server, bool serving) {
  grpc::HealthCheckServiceInterface* health = server.GetHealthCheckService();
  if (health == nullptr) return;
  health->SetServingStatus(serving);  // "" and every registered service
  for (const char* name : kServiceNames) health->SetServingStatus(name, serving);
}

// Insecure credentials without TLS options; otherwise the server's certificate and, with a
// client CA, mutual TLS that refuses clients without a certificate that CA signed.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ServerCredentialsFor(
    const ServerOptions& options) {
  const bool tls = !options.tls_cert_file.empty() || !options.tls_key_file.empty();
  if (!tls) {
    if (!options.tls_client_ca_file.empty()) {
      return absl::InvalidArgumentError(
          "--tls_client_ca_file: needs --tls_cert_file and --tls_key_file (mutual TLS is TLS)");
    }
    return grpc::InsecureServerCredentials();
  }
  if (options.tls_cert_file.empty() || options.tls_key_file.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(options.tls_cert_file.empty() ? "--tls_cert_file" : "--tls_key_file",
                     ": TLS needs both --tls_cert_file and --tls_key_file"));
  }
  grpc::SslServerCredentialsOptions::PemKeyCertPair pair;
  INVNET_ASSIGN_OR_RETURN(pair.cert_chain,
                          ReadPemFile("--tls_cert_file", options.tls_cert_file, "CERTIFICATE"));
  INVNET_ASSIGN_OR_RETURN(pair.private_key,
                          ReadPemFile("--tls_key_file", options.tls_key_file, "PRIVATE KEY"));
  grpc::SslServerCredentialsOptions ssl(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  ssl.pem_key_cert_pairs.push_back(std::move(pair));
  if (!options.tls_client_ca_file.empty()) {
    INVNET_ASSIGN_OR_RETURN(
        ssl.pem_root_certs,
        ReadPemFile("--tls_client_ca_file", options.tls_client_ca_file, "CERTIFICATE"));
    ssl.client_certificate_request = GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  return grpc::SslServerCredentials(ssl);
}

// The gauges that describe the server's state, computed at scrape time.
void AppendStateGauges(const ModelRepository& models, const JobManager& jobs, std::string* out) {
  AppendGauge(out, "invnet_models_loaded", "Model versions loaded and served.",
              static_cast<double>(models.num_versions()));
  const std::vector<v1::TrainingJob> all = jobs.List();
  AppendHeader(out, "invnet_training_jobs", "Training jobs known to the server, by state.",
               "gauge");
  for (int state = v1::JOB_STATE_QUEUED; state <= v1::JOB_STATE_CANCELLED; ++state) {
    const auto n = std::count_if(all.begin(), all.end(),
                                 [&](const v1::TrainingJob& job) { return job.state() == state; });
    absl::string_view name = v1::JobState_Name(static_cast<v1::JobState>(state));
    absl::ConsumePrefix(&name, "JOB_STATE_");
    AppendSample(out, "invnet_training_jobs", absl::StrCat("state=\"", name, "\""),
                 static_cast<double>(n));
  }
  AppendHeader(out, "invnet_training_job_step", "The step a running training job has reached.",
               "gauge");
  std::string total_steps;
  for (const v1::TrainingJob& job : all) {
    if (job.state() != v1::JOB_STATE_RUNNING) continue;
    const std::string labels =
        absl::StrCat("job_id=\"", EscapeLabelValue(job.job_id()), "\",model=\"",
                     EscapeLabelValue(job.model_name()), "\"");
    AppendSample(out, "invnet_training_job_step", labels, static_cast<double>(job.step()));
    AppendSample(&total_steps, "invnet_training_job_total_steps", labels,
                 static_cast<double>(job.total_steps()));
  }
  AppendHeader(out, "invnet_training_job_total_steps", "The steps a running training job takes.",
               "gauge");
  out->append(total_steps);
}

}  // namespace

absl::Status ValidateServerOptions(const ServerOptions& options) {
  if (options.repository.empty()) {
    return absl::InvalidArgumentError("--repository: a directory is required");
  }
  if (options.max_message_bytes < (1 << 20) || options.max_message_bytes > (int64_t{2} << 30) - 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--max_message_mb: ", options.max_message_bytes >> 20, " must lie in [1, 2047] (MiB)"));
  }
  if (options.max_dataset_bytes < (1 << 20)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--max_dataset_mb: ", options.max_dataset_bytes >> 20, " must be >= 1 (MiB)"));
  }
  const auto at_least = [](absl::string_view flag, int64_t value, int64_t least) -> absl::Status {
    if (value >= least) return absl::OkStatus();
    return absl::InvalidArgumentError(absl::StrCat(flag, ": ", value, " must be >= ", least));
  };
  INVNET_RETURN_IF_ERROR(at_least("--max_jobs", options.max_concurrent_jobs, 1));
  INVNET_RETURN_IF_ERROR(at_least("--max_queued_jobs", options.max_queued_jobs, 0));
  INVNET_RETURN_IF_ERROR(at_least("--max_watch_streams", options.max_watch_streams, 1));
  INVNET_RETURN_IF_ERROR(at_least("--max_watch_streams_per_connection",
                                  options.max_watch_streams_per_connection, 1));
  INVNET_RETURN_IF_ERROR(at_least("--max_models", options.max_model_versions, 1));
  INVNET_RETURN_IF_ERROR(at_least("--max_batch", options.max_batch, 1));
  INVNET_RETURN_IF_ERROR(at_least("--torch_threads", options.torch_threads, 0));
  if (options.max_job_memory_bytes < 0) {
    return absl::InvalidArgumentError(
        "--max_job_memory_mb: must be >= 0 (0: half of the machine's memory)");
  }
  if (options.shutdown_grace < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--shutdown_grace_seconds: ", absl::ToInt64Seconds(options.shutdown_grace),
                     " must be >= 0"));
  }
  // Its messages start with the option's name, the flag's name but for the delay's unit.
  if (absl::Status batching = ValidateBatcherOptions(options.batching); !batching.ok()) {
    absl::string_view message = batching.message();
    const bool delay = absl::ConsumePrefix(&message, "batch_max_delay:");
    return absl::InvalidArgumentError(
        absl::StrCat("--", delay ? "batch_max_delay_us:" : "", message));
  }
  INVNET_ASSIGN_OR_RETURN(const ListenAddress address,
                          ParseListenAddress("--address", options.address));
  if (!IsLoopback(address) && options.auth_tokens_file.empty() && !options.allow_unauthenticated) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--address: ", options.address,
        " is reachable from other machines, and without --auth_tokens_file anyone who can "
        "reach it can train, upload and delete: give --auth_tokens_file (with TLS), listen on "
        "127.0.0.1, or pass --allow_unauthenticated to serve without authentication anyway"));
  }
  return absl::OkStatus();
}

bool ListensBeyondLoopback(const ServerOptions& options) {
  absl::StatusOr<ListenAddress> address = ParseListenAddress("--address", options.address);
  return address.ok() && !IsLoopback(*address);
}

absl::StatusOr<std::unique_ptr<Server>> Server::Start(const ServerOptions& options) {
  INVNET_RETURN_IF_ERROR(ValidateServerOptions(options));
  if (ListensBeyondLoopback(options) && options.auth_tokens_file.empty()) {
    LOG(WARNING) << "serving " << options.address
                 << " without authentication (--allow_unauthenticated): anyone who can reach "
                    "it can train, upload and delete";
  }
  INVNET_ASSIGN_OR_RETURN(std::shared_ptr<grpc::ServerCredentials> credentials,
                          ServerCredentialsFor(options));
  std::unique_ptr<Server> server(new Server());
  server->options_ = options;
  if (!options.auth_tokens_file.empty()) {
    absl::StatusOr<Authorizer> authorizer = Authorizer::FromFile(options.auth_tokens_file);
    if (!authorizer.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--auth_tokens_file: ", authorizer.status().message()));
    }
    server->authorizer_ = *std::move(authorizer);
  }
  const int threads = options.torch_threads > 0
                          ? options.torch_threads
                          : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  at::set_num_threads(threads);

  INVNET_ASSIGN_OR_RETURN(server->models_, ModelRepository::Open(options.repository));
  server->models_->set_max_versions(options.max_model_versions);
  INVNET_ASSIGN_OR_RETURN(server->datasets_, DatasetStore::Open(options.repository));
  JobManagerOptions job_options;
  job_options.max_concurrent_jobs = options.max_concurrent_jobs;
  job_options.max_queued_jobs = options.max_queued_jobs;
  job_options.torch_threads = threads;
  job_options.max_job_memory_bytes = options.max_job_memory_bytes > 0
                                         ? options.max_job_memory_bytes
                                         : DefaultMaxJobMemoryBytes();
  ServiceLimits limits;
  // A float tensor can never be larger than the largest message.
  limits.tensors.max_elements = options.max_message_bytes / 4;
  limits.tensors.max_batch = options.max_batch;
  limits.max_dataset_bytes = options.max_dataset_bytes;
  job_options.limits = limits.tensors;
  INVNET_ASSIGN_OR_RETURN(server->jobs_, JobManager::Create(options.repository,
                                                            server->models_.get(),
                                                            server->datasets_.get(), job_options));
  for (const auto* problems : {&server->models_->load_problems(),
                               &server->datasets_->load_problems(),
                               &server->jobs_->load_problems()}) {
    server->load_problems_.insert(server->load_problems_.end(), problems->begin(),
                                  problems->end());
  }

  server->metrics_ = std::make_unique<ServerMetrics>();
  server->metrics_->AddCollector([models = server->models_.get(), jobs = server->jobs_.get()](
                                     std::string* out) { AppendStateGauges(*models, *jobs, out); });
  if (!options.metrics_address.empty()) {
    INVNET_ASSIGN_OR_RETURN(
        server->metrics_http_,
        MetricsHttpServer::Start(options.metrics_address,
                                 [metrics = server->metrics_.get()] { return metrics->Render(); }));
  }

  server->reconstruction_ = std::make_unique<ReconstructionServiceImpl>(
      server->models_.get(), server->datasets_.get(), limits, &server->authorizer_,
      options.batching, server->metrics_.get());
  server->training_ = std::make_unique<TrainingServiceImpl>(
      server->jobs_.get(), &server->authorizer_,
      WatchStreamLimits{options.max_watch_streams, options.max_watch_streams_per_connection});
  server->model_service_ =
      std::make_unique<ModelServiceImpl>(server->models_.get(), &server->authorizer_);
  server->dataset_service_ =
      std::make_unique<DatasetServiceImpl>(server->datasets_.get(), limits, &server->authorizer_);

  grpc::EnableDefaultHealthCheckService(true);
  if (options.reflection) grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options.address, credentials, &server->port_);
  builder.SetMaxReceiveMessageSize(static_cast<int>(options.max_message_bytes));
  builder.SetMaxSendMessageSize(static_cast<int>(options.max_message_bytes));
  // gRPC's defaults (1 to 2 polling threads) made concurrent clients queue behind a few threads
  // that it kept creating and destroying, and so did a cap of 8: with 16 clients, batch 1,
  // 3,900 requests/s and a p99 of 120 ms; with a cap of 32, 11,000 requests/s and 3 ms (2-core
  // machine, client on the same cores).
  builder.SetSyncServerOption(grpc::ServerBuilder::SyncServerOption::MIN_POLLERS, 4);
  builder.SetSyncServerOption(grpc::ServerBuilder::SyncServerOption::MAX_POLLERS, kMaxPollers);
  // Without it gRPC sets SO_REUSEPORT, and a second server on the same port silently shares it.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  // Every call of the synchronous server holds a thread while it runs. The ones that may wait
  // long are bounded by their own limits (Watch streams, queued Reconstruct requests); the
  // quota bounds the rest, so no client can make the thread count grow without limit. A call
  // beyond it is answered RESOURCE_EXHAUSTED by gRPC.
  grpc::ResourceQuota quota("invnet-server");
  quota.SetMaxThreads(MaxServerThreads(options));
  builder.SetResourceQuota(quota);
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> observers;
  observers.push_back(std::make_unique<RpcObserverFactory>(server->metrics_.get()));
  builder.experimental().SetInterceptorCreators(std::move(observers));
  builder.RegisterService(server->reconstruction_.get());
  builder.RegisterService(server->training_.get());
  builder.RegisterService(server->model_service_.get());
  builder.RegisterService(server->dataset_service_.get());
  server->grpc_server_ = builder.BuildAndStart();
  if (server->grpc_server_ == nullptr || server->port_ == 0) {
    // gRPC only logs why; binding the address ourselves tells (e.g. "address already in use").
    INVNET_ASSIGN_OR_RETURN(const ListenAddress address,
                            ParseListenAddress("--address", options.address));
    absl::StatusOr<int> probe = ListenTcp("--address", address, 1);
    if (!probe.ok()) return probe.status();
    close(*probe);
    return absl::UnavailableError(absl::StrCat(
        "--address: could not listen on ", options.address,
        options.tls_cert_file.empty()
            ? ""
            : " (or the TLS certificate and key were refused: do they belong together?)"));
  }
  SetHealth(*server->grpc_server_, true);
  return server;
}

Server::~Server() { Shutdown(); }

std::shared_ptr<grpc::Channel> Server::InProcessChannel() {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(static_cast<int>(options_.max_message_bytes));
  args.SetMaxSendMessageSize(static_cast<int>(options_.max_message_bytes));
  return grpc_server_->InProcessChannel(args);
}

void Server::Shutdown() {
  absl::MutexLock lock(&shutdown_mu_);
  if (shut_down_ || grpc_server_ == nullptr) return;
  shut_down_ = true;
  SetHealth(*grpc_server_, false);
  // Jobs first: their Watch streams end when they do.
  jobs_->Shutdown();
  grpc_server_->Shutdown(std::chrono::system_clock::now() +
                         absl::ToChronoNanoseconds(options_.shutdown_grace));
  grpc_server_->Wait();
  if (metrics_http_ != nullptr) metrics_http_->Shutdown();
}

}  // namespace invnet::server
