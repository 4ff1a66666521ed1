#include "tests/client/fake_server.h"

#include <chrono>
#include <cstdlib>
#include <iostream>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server_builder.h"

namespace invnet::client::testing {
namespace {

using grpc::ServerContext;
using grpc::Status;
using grpc::StatusCode;

constexpr int kMaxMessageBytes = 256 * 1024 * 1024;

// Records the call and its deadline; returns the forced status if any, after waiting for the
// client to give up when asked to.
std::optional<Status> Enter(FakeState& state, ServerContext* context, const std::string& method) {
  absl::Duration left = absl::InfiniteDuration();
  // No deadline reads as system_clock::time_point::max(), which absl::FromChrono would turn
  // into year 2262 rather than infinity.
  if (context->deadline() != std::chrono::system_clock::time_point::max()) {
    left = absl::FromChrono(context->deadline()) - absl::Now();
  }
  bool block = false;
  absl::Duration delay;
  {
    absl::MutexLock lock(&state.mu);
    state.calls.push_back(method);
    state.time_left[method] = left;
    block = state.block_until_cancelled;
    delay = state.delay;
    if (!block && state.fail_with.has_value()) return state.fail_with;
  }
  if (delay > absl::ZeroDuration()) absl::SleepFor(delay);
  if (block) {
    const absl::Time give_up = absl::Now() + absl::Seconds(20);
    while (!context->IsCancelled() && absl::Now() < give_up) absl::SleepFor(absl::Milliseconds(5));
    return Status(StatusCode::CANCELLED, "the client gave up");
  }
  return std::nullopt;
}

Status NotFound(const std::string& what) { return Status(StatusCode::NOT_FOUND, what); }

void Scale(const v1::Tensor& in, float factor, v1::Tensor* out) {
  *out->mutable_shape() = in.shape();
  for (float v : in.values()) out->add_values(factor * v);
}

bool HasModel(FakeState& state, const std::string& name) ABSL_EXCLUSIVE_LOCKS_REQUIRED(state.mu) {
  for (const v1::Model& model : state.models) {
    if (model.name() == name) return true;
  }
  return false;
}

v1::Model* FindModel(FakeState& state, const std::string& name)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(state.mu) {
  for (v1::Model& model : state.models) {
    if (model.name() == name) return &model;
  }
  return nullptr;
}

const v1::ModelVersion* LatestVersion(FakeState& state, const std::string& name)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(state.mu) {
  const v1::Model* model = FindModel(state, name);
  if (model == nullptr || model->versions().empty()) return nullptr;
  return &*model->versions().rbegin();
}

// (m, n) of an operator.
Status CheckBatch(const FakeState& state, const v1::Tensor& tensor, const std::string& field)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(state.mu) {
  int64_t count = 1;
  for (int64_t d : tensor.shape()) count *= d;
  if (tensor.shape_size() != 2 || count != tensor.values_size()) {
    return Status(StatusCode::INVALID_ARGUMENT, field + ": expected [batch, dim]");
  }
  return Status::OK;
}

class FakeReconstruction final : public v1::ReconstructionService::Service {
 public:
  explicit FakeReconstruction(FakeState* state) : state_(*state) {}

  Status Reconstruct(ServerContext* context, const v1::ReconstructRequest* request,
                     v1::ReconstructResponse* response) override {
    if (auto forced = Enter(state_, context, "Reconstruct")) return *forced;
    absl::MutexLock lock(&state_.mu);
    state_.reconstruct = *request;
    if (!HasModel(state_, request->model())) return NotFound("model " + request->model());
    Status valid = CheckBatch(state_, request->measurements(), "measurements");
    if (!valid.ok()) return valid;
    response->set_model(request->model());
    response->set_version(request->version() == 0 ? 1 : request->version());
    Scale(request->measurements(), 0.5f, response->mutable_reconstructions());
    for (int64_t i = 0; i < request->measurements().shape(0); ++i) {
      response->add_iterations(i + 1);
      response->add_converged(i != 1);
      response->add_error_bound(1e-6 * static_cast<double>(i + 1));
      response->add_forward_residual(1e-5);
    }
    return Status::OK;
  }

  Status Forward(ServerContext* context, const v1::ForwardRequest* request,
                 v1::ForwardResponse* response) override {
    if (auto forced = Enter(state_, context, "Forward")) return *forced;
    absl::MutexLock lock(&state_.mu);
    if (!HasModel(state_, request->model())) return NotFound("model " + request->model());
    Status valid = CheckBatch(state_, request->signals(), "signals");
    if (!valid.ok()) return valid;
    response->set_model(request->model());
    response->set_version(1);
    Scale(request->signals(), 2.0f, response->mutable_outputs());
    return Status::OK;
  }

  Status Estimate(ServerContext* context, const v1::EstimateRequest* request,
                  v1::EstimateResponse* response) override {
    if (auto forced = Enter(state_, context, "Estimate")) return *forced;
    absl::MutexLock lock(&state_.mu);
    if (!HasModel(state_, request->model())) return NotFound("model " + request->model());
    Status valid = CheckBatch(state_, request->measurements(), "measurements");
    if (!valid.ok()) return valid;
    auto wants = [&](v1::Estimator e) {
      if (request->estimators().empty()) return true;
      for (int asked : request->estimators()) {
        if (asked == e) return true;
      }
      return false;
    };
    const v1::Tensor& y = request->measurements();
    response->set_model(request->model());
    response->set_version(1);
    if (wants(v1::ESTIMATOR_POSTERIOR_MEAN)) Scale(y, 0.5f, response->mutable_posterior_mean());
    if (wants(v1::ESTIMATOR_POSTERIOR_STD)) {
      Scale(y, 0.0f, response->mutable_posterior_std());
      for (float& v : *response->mutable_posterior_std()->mutable_values()) v = 1.0f;
    }
    if (wants(v1::ESTIMATOR_MAP)) {
      Scale(y, 1.0f, response->mutable_map());
      for (int64_t i = 0; i < y.shape(0); ++i) {
        response->add_map_objective(static_cast<double>(i));
        response->add_map_gradient_norm(0.25 * static_cast<double>(i));
      }
    }
    if (wants(v1::ESTIMATOR_WIENER)) Scale(y, 0.25f, response->mutable_wiener());
    if (wants(v1::ESTIMATOR_PSEUDO_INVERSE)) Scale(y, 1.0f, response->mutable_pseudo_inverse());
    return Status::OK;
  }

  Status DrawTestPairs(ServerContext* context, const v1::DrawTestPairsRequest* request,
                       v1::DrawTestPairsResponse* response) override {
    if (auto forced = Enter(state_, context, "DrawTestPairs")) return *forced;
    absl::MutexLock lock(&state_.mu);
    state_.draw = *request;
    const v1::ModelVersion* latest = LatestVersion(state_, request->model());
    if (latest == nullptr) return NotFound("model " + request->model());
    if (request->count() < 1) return Status(StatusCode::INVALID_ARGUMENT, "count: must be >= 1");
    const int64_t n = latest->architecture().dim(), m = latest->measurement_dim();
    response->set_model(request->model());
    response->set_version(latest->version());
    v1::Tensor* x = response->mutable_signals();
    v1::Tensor* y = response->mutable_measurements();
    x->add_shape(request->count());
    x->add_shape(n);
    y->add_shape(request->count());
    y->add_shape(m);
    for (int64_t i = 0; i < request->count(); ++i) {
      for (int64_t j = 0; j < n; ++j) x->add_values(FakeSignal(request->seed(), i, j));
      for (int64_t k = 0; k < m; ++k) y->add_values(FakeSignal(request->seed() + 1, i, k));
    }
    return Status::OK;
  }

 private:
  FakeState& state_;
};

class FakeTraining final : public v1::TrainingService::Service {
 public:
  explicit FakeTraining(FakeState* state) : state_(*state) {}

  Status Train(ServerContext* context, const v1::TrainRequest* request,
               v1::TrainResponse* response) override {
    if (auto forced = Enter(state_, context, "Train")) return *forced;
    *response->mutable_job() = MakeJob("job-1", request->model_name(), v1::JOB_STATE_QUEUED, 0,
                                       request->training().steps());
    return Status::OK;
  }

  Status GetTrainingJob(ServerContext* context, const v1::GetTrainingJobRequest* request,
                        v1::GetTrainingJobResponse* response) override {
    if (auto forced = Enter(state_, context, "GetTrainingJob")) return *forced;
    absl::MutexLock lock(&state_.mu);
    for (const v1::TrainingJob& job : state_.jobs) {
      if (job.job_id() == request->job_id()) {
        *response->mutable_job() = job;
        return Status::OK;
      }
    }
    return NotFound("job " + request->job_id());
  }

  Status ListTrainingJobs(ServerContext* context, const v1::ListTrainingJobsRequest*,
                          v1::ListTrainingJobsResponse* response) override {
    if (auto forced = Enter(state_, context, "ListTrainingJobs")) return *forced;
    absl::MutexLock lock(&state_.mu);
    for (const v1::TrainingJob& job : state_.jobs) *response->add_jobs() = job;
    return Status::OK;
  }

  Status CancelTrainingJob(ServerContext* context, const v1::CancelTrainingJobRequest* request,
                           v1::CancelTrainingJobResponse* response) override {
    if (auto forced = Enter(state_, context, "CancelTrainingJob")) return *forced;
    absl::MutexLock lock(&state_.mu);
    for (v1::TrainingJob& job : state_.jobs) {
      if (job.job_id() != request->job_id()) continue;
      if (job.state() != v1::JOB_STATE_QUEUED && job.state() != v1::JOB_STATE_RUNNING) {
        return Status(StatusCode::FAILED_PRECONDITION, "job " + job.job_id() + " has finished");
      }
      job.set_state(v1::JOB_STATE_CANCELLED);
      job.set_error("cancelled by request");
      *response->mutable_job() = job;
      return Status::OK;
    }
    return NotFound("job " + request->job_id());
  }

  Status WatchTrainingJob(ServerContext* context, const v1::WatchTrainingJobRequest* request,
                          grpc::ServerWriter<v1::WatchTrainingJobResponse>* writer) override {
    if (auto forced = Enter(state_, context, "WatchTrainingJob")) return *forced;
    std::vector<v1::TrainingJob> updates;
    {
      absl::MutexLock lock(&state_.mu);
      updates = state_.watch_updates;
    }
    if (updates.empty()) return NotFound("job " + request->job_id());
    for (const v1::TrainingJob& job : updates) {
      v1::WatchTrainingJobResponse message;
      *message.mutable_job() = job;
      if (!writer->Write(message)) break;
    }
    bool hold = false;
    {
      absl::MutexLock lock(&state_.mu);
      hold = state_.hold_watch_open;
    }
    if (hold) {
      const absl::Time give_up = absl::Now() + absl::Seconds(20);
      while (!context->IsCancelled() && absl::Now() < give_up) {
        absl::SleepFor(absl::Milliseconds(5));
      }
    }
    return Status::OK;
  }

 private:
  FakeState& state_;
};

class FakeModels final : public v1::ModelService::Service {
 public:
  explicit FakeModels(FakeState* state) : state_(*state) {}

  Status ListModels(ServerContext* context, const v1::ListModelsRequest*,
                    v1::ListModelsResponse* response) override {
    if (auto forced = Enter(state_, context, "ListModels")) return *forced;
    absl::MutexLock lock(&state_.mu);
    for (const v1::Model& model : state_.models) *response->add_models() = model;
    return Status::OK;
  }

  Status GetModel(ServerContext* context, const v1::GetModelRequest* request,
                  v1::GetModelResponse* response) override {
    if (auto forced = Enter(state_, context, "GetModel")) return *forced;
    absl::MutexLock lock(&state_.mu);
    for (const v1::Model& model : state_.models) {
      if (model.name() == request->name()) {
        *response->mutable_model() = model;
        return Status::OK;
      }
    }
    return NotFound("model " + request->name());
  }

  Status DeleteModel(ServerContext* context, const v1::DeleteModelRequest* request,
                     v1::DeleteModelResponse*) override {
    if (auto forced = Enter(state_, context, "DeleteModel")) return *forced;
    absl::MutexLock lock(&state_.mu);
    if (!HasModel(state_, request->name())) return NotFound("model " + request->name());
    return Status::OK;
  }

 private:
  FakeState& state_;
};

class FakeDatasets final : public v1::DatasetService::Service {
 public:
  explicit FakeDatasets(FakeState* state) : state_(*state) {}

  Status UploadDataset(ServerContext* context, grpc::ServerReader<v1::UploadDatasetRequest>* reader,
                       v1::UploadDatasetResponse* response) override {
    if (auto forced = Enter(state_, context, "UploadDataset")) return *forced;
    v1::UploadDatasetRequest message;
    if (!reader->Read(&message) || !message.has_header()) {
      return Status(StatusCode::INVALID_ARGUMENT, "the first message must be the header");
    }
    const v1::DatasetHeader header = message.header();
    {
      absl::MutexLock lock(&state_.mu);
      state_.upload_messages.push_back(message);
      for (const v1::Dataset& d : state_.datasets) {
        if (d.name() == header.name()) {
          return Status(StatusCode::ALREADY_EXISTS, "dataset " + header.name() + " exists");
        }
      }
    }
    int64_t rows = 0;
    while (reader->Read(&message)) {
      absl::MutexLock lock(&state_.mu);
      state_.upload_messages.push_back(message);
      if (!message.has_chunk() || message.chunk().shape_size() != 2 ||
          message.chunk().shape(1) != header.dim()) {
        return Status(StatusCode::INVALID_ARGUMENT, "chunk: expected [k, dim]");
      }
      rows += message.chunk().shape(0);
    }
    if (rows != header.num_samples()) {
      return Status(
          StatusCode::INVALID_ARGUMENT,
          absl::StrCat("header announced ", header.num_samples(), " samples, got ", rows));
    }
    v1::Dataset* dataset = response->mutable_dataset();
    dataset->set_name(header.name());
    dataset->set_dim(header.dim());
    dataset->set_num_samples(rows);
    dataset->set_size_bytes(rows * header.dim() * 4);
    absl::MutexLock lock(&state_.mu);
    state_.datasets.push_back(*dataset);
    return Status::OK;
  }

  Status ListDatasets(ServerContext* context, const v1::ListDatasetsRequest*,
                      v1::ListDatasetsResponse* response) override {
    if (auto forced = Enter(state_, context, "ListDatasets")) return *forced;
    absl::MutexLock lock(&state_.mu);
    for (const v1::Dataset& d : state_.datasets) *response->add_datasets() = d;
    return Status::OK;
  }

  Status DeleteDataset(ServerContext* context, const v1::DeleteDatasetRequest* request,
                       v1::DeleteDatasetResponse*) override {
    if (auto forced = Enter(state_, context, "DeleteDataset")) return *forced;
    absl::MutexLock lock(&state_.mu);
    for (auto it = state_.datasets.begin(); it != state_.datasets.end(); ++it) {
      if (it->name() == request->name()) {
        state_.datasets.erase(it);
        return Status::OK;
      }
    }
    return NotFound("dataset " + request->name());
  }

 private:
  FakeState& state_;
};

class FakeHealth final : public grpc::health::v1::Health::Service {
 public:
  explicit FakeHealth(FakeState* state) : state_(*state) {}

  Status Check(ServerContext* context, const grpc::health::v1::HealthCheckRequest* request,
               grpc::health::v1::HealthCheckResponse* response) override {
    if (auto forced = Enter(state_, context, "Health")) return *forced;
    const std::string& service = request->service();
    if (!service.empty() && service != "invnet.v1.ReconstructionService" &&
        service != "invnet.v1.TrainingService" && service != "invnet.v1.ModelService" &&
        service != "invnet.v1.DatasetService") {
      return NotFound("unknown service " + service);
    }
    absl::MutexLock lock(&state_.mu);
    response->set_status(state_.health);
    return Status::OK;
  }

 private:
  FakeState& state_;
};

}  // namespace

FakeServer::FakeServer() : state_(std::make_unique<FakeState>()) {
  services_.push_back(std::make_unique<FakeReconstruction>(state_.get()));
  services_.push_back(std::make_unique<FakeTraining>(state_.get()));
  services_.push_back(std::make_unique<FakeModels>(state_.get()));
  services_.push_back(std::make_unique<FakeDatasets>(state_.get()));
  services_.push_back(std::make_unique<FakeHealth>(state_.get()));
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.SetMaxReceiveMessageSize(kMaxMessageBytes);
  builder.SetMaxSendMessageSize(kMaxMessageBytes);
  for (auto& service : services_) builder.RegisterService(service.get());
  server_ = builder.BuildAndStart();
  if (server_ == nullptr || port == 0) {
    std::cerr << "FakeServer: cannot listen on 127.0.0.1\n";
    std::abort();
  }
  target_ = absl::StrCat("127.0.0.1:", port);
}

FakeServer::~FakeServer() {
  {
    // Let blocked handlers return at once.
    absl::MutexLock lock(&state_->mu);
    state_->block_until_cancelled = false;
  }
  server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
}

std::shared_ptr<grpc::Channel> FakeServer::InProcessChannel() {
  grpc::ChannelArguments args;
  return server_->InProcessChannel(args);
}

std::vector<std::string> FakeServer::calls() {
  absl::MutexLock lock(&state_->mu);
  return state_->calls;
}

absl::Duration FakeServer::time_left(const std::string& method) {
  absl::MutexLock lock(&state_->mu);
  auto it = state_->time_left.find(method);
  return it == state_->time_left.end() ? absl::ZeroDuration() : it->second;
}

void FakeServer::FailWith(grpc::Status status) {
  absl::MutexLock lock(&state_->mu);
  state_->fail_with = std::move(status);
}

float FakeSignal(uint64_t seed, int64_t row, int64_t col) {
  // SplitMix64 of (seed, row, col): well spread, cheap, platform independent.
  uint64_t z = seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(row) * 0xBF58476D1CE4E5B9ull +
               static_cast<uint64_t>(col) * 0x94D049BB133111EBull + 0x2545F4914F6CDD1Dull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return static_cast<float>(static_cast<double>(z >> 40) / static_cast<double>(1 << 24) * 4.0 -
                            2.0);
}

}  // namespace invnet::client::testing
