#include "server/job_manager.h"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <optional>
#include <random>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <glog/logging.h>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "models/archive.h"
#include "models/memory_estimate.h"
#include "models/trainer.h"
#include "proto/base/file_io.h"
#include "proto/base/status_macros.h"
#include "proto/timestamp.h"
#include "server/names.h"
#include "server/spec_codec.h"

namespace invnet::server {
namespace fs = std::filesystem;
namespace {

constexpr char kKind[] = "invnet.job";
constexpr char kSuffix[] = ".job";

bool IsFinished(v1::JobState state) {
  return state == v1::JOB_STATE_SUCCEEDED || state == v1::JOB_STATE_FAILED ||
         state == v1::JOB_STATE_CANCELLED;
}

void SetValidation(int64_t step, const EvaluationMetrics& m, v1::ValidationMetrics* proto) {
  proto->set_step(step);
  proto->set_mse(m.mse);
  proto->set_mse_ratio_to_pm(m.mse_ratio_to_pm);
  proto->set_forward_error(m.forward_error);
  proto->set_converged_fraction(m.converged_fraction);
  proto->set_mean_iterations(m.mean_iterations);
}

// RESOURCE_EXHAUSTED when the job would need more memory than `limit` bytes (0: no limit).
absl::Status CheckJobMemory(const ResolvedTraining& resolved, const ProblemSize& size,
                            int64_t limit) {
  if (limit <= 0) return absl::OkStatus();
  const TrainingMemory need =
      EstimateTrainingMemory(resolved.architecture, resolved.training, size);
  if (need.total() <= static_cast<double>(limit)) return absl::OkStatus();
  return absl::ResourceExhaustedError(absl::StrCat(
      "the training job would need about ", FormatBytes(need.total()), " of memory (",
      need.Describe(), "), more than the ", limit >> 20,
      " MiB a job may use (--max_job_memory_mb); make the network (architecture.num_blocks, "
      "hidden_width, layers_per_block) or training.batch_size, validation_size or "
      "exact_jacobian_max_dim smaller"));
}

// Ids reach here validated by the RPC layer; quoted anyway, so no caller can make it echo more.
absl::Status JobNotFound(const std::string& id) {
  return absl::NotFoundError(absl::StrCat("job ", QuoteForMessage(id), " not found"));
}

}  // namespace

int64_t DefaultMaxJobMemoryBytes() {
  // The least of the physical memory, this process's address-space and data limits (prlimit,
  // ulimit -v) and its cgroup's limit (a container's memory.max).
  std::optional<int64_t> available;
  auto at_most = [&available](int64_t bytes) {
    if (bytes > 0) available = std::min(bytes, available.value_or(bytes));
  };
  const long pages = sysconf(_SC_PHYS_PAGES);
  const long page_size = sysconf(_SC_PAGESIZE);
  if (pages > 0 && page_size > 0) at_most(static_cast<int64_t>(pages) * page_size);
  for (int resource : {RLIMIT_AS, RLIMIT_DATA}) {
    rlimit limit{};
    if (getrlimit(resource, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY) {
      at_most(static_cast<int64_t>(limit.rlim_cur));
    }
  }
  if (absl::StatusOr<std::string> cgroup = ReadFileToString("/sys/fs/cgroup/memory.max");
      cgroup.ok()) {
    int64_t bytes = 0;
    if (absl::SimpleAtoi(absl::StripAsciiWhitespace(*cgroup), &bytes)) at_most(bytes);  // "max": none
  }
  return available.has_value() ? *available / 2 : 0;  // unknown: no limit
}

struct JobManager::Job {
  v1::TrainingJob record;
  int64_t revision = 0;
  absl::Time last_publish;
  absl::Time last_persist;
  std::atomic<bool> cancel_requested{false};
  std::string cancel_reason;  // guarded by mu_
  ResolvedTraining resolved;  // with the dataset's fingerprint, checked again at the start
};

JobManager::JobManager(std::string dir, ModelRepository* models, DatasetStore* datasets,
                       JobManagerOptions options)
    : dir_(std::move(dir)), models_(models), datasets_(datasets), options_(std::move(options)) {}

JobManager::~JobManager() { Shutdown(); }

absl::StatusOr<std::unique_ptr<JobManager>> JobManager::Create(const std::string& root,
                                                              ModelRepository* models,
                                                              DatasetStore* datasets,
                                                              const JobManagerOptions& options) {
  const std::string dir = root + "/jobs";
  if (!options.read_only) INVNET_RETURN_IF_ERROR(MakeDirectories(dir));
  std::unique_ptr<JobManager> manager(new JobManager(dir, models, datasets, options));
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string file = entry.path().filename().string();
    if (!absl::EndsWith(file, kSuffix)) {
      if (absl::StrContains(file, kTemporaryFileMarker)) {
        if (options.read_only) {
          manager->leftovers_.push_back(absl::StrCat("jobs/", file));
        } else {
          RemoveTree(entry.path().string());
        }
      }
      continue;
    }
    v1::TrainingJob record;
    absl::StatusOr<std::string> bytes = ReadFileToString(entry.path().string());
    absl::StatusOr<ArchiveReader> reader =
        bytes.ok() ? ArchiveReader::Parse(*std::move(bytes), kKind)
                   : absl::StatusOr<ArchiveReader>(bytes.status());
    absl::StatusOr<std::string> serialized =
        reader.ok() ? reader->GetString("job") : absl::StatusOr<std::string>(reader.status());
    if (!serialized.ok() || !record.ParseFromString(*serialized) || record.job_id().empty()) {
      manager->load_problems_.push_back(absl::StrCat(
          "jobs/", file, ": ", serialized.ok() ? "unreadable record" : serialized.status().ToString()));
      continue;
    }
    if (!IsFinished(record.state()) && options.read_only) {
      manager->leftovers_.push_back(absl::StrCat(
          "jobs/", file, ": job ", record.job_id(),
          " was running when the server stopped (it shows as FAILED at the next start)"));
    } else if (!IsFinished(record.state())) {
      record.set_state(v1::JOB_STATE_FAILED);
      record.set_error("server restarted while the job was running; nothing was published");
      *record.mutable_finished() = ToProtoTimestamp(absl::Now());
      manager->Persist(record);
    }
    auto job = std::make_shared<Job>();
    job->record = record;
    absl::MutexLock lock(&manager->mu_);
    manager->jobs_[record.job_id()] = std::move(job);
  }
  if (!options.read_only) {
    JobManager* m = manager.get();
    absl::MutexLock lock(&m->mu_);
    for (int i = 0; i < options.max_concurrent_jobs; ++i) {
      m->workers_.emplace_back([m] { m->Work(); });
    }
  }
  return manager;
}

absl::Status JobManager::WriteRecord(const v1::TrainingJob& record) const {
  ArchiveWriter writer(kKind);
  writer.PutString("job", record.SerializeAsString());
  return WriteFileAtomically(absl::StrCat(dir_, "/", record.job_id(), kSuffix), writer.Finish());
}

void JobManager::Persist(const v1::TrainingJob& record) {
  absl::MutexLock lock(&persist_mu_);
  absl::Status status = WriteRecord(record);
  if (status.ok()) {
    unpersisted_.erase(record.job_id());
  } else {
    LOG(WARNING) << "could not persist job " << record.job_id() << ": " << status;
    unpersisted_[record.job_id()] = record;
  }
  // Records that failed to save earlier (a full disk, say) are retried with every later save,
  // so that a job's final state and reason reach the disk once there is room again.
  for (auto it = unpersisted_.begin(); it != unpersisted_.end();) {
    it = it->first != record.job_id() && WriteRecord(it->second).ok() ? unpersisted_.erase(it)
                                                                      : std::next(it);
  }
}

void JobManager::Publish(Job& job) {
  ++job.revision;
  job.last_publish = absl::Now();
  changed_.SignalAll();
}

void JobManager::Work() {
  while (true) {
    std::shared_ptr<Job> job;
    {
      absl::MutexLock lock(&mu_);
      const auto has_work = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return shutting_down_ || !queue_.empty();
      };
      mu_.Await(absl::Condition(&has_work));
      if (shutting_down_) return;  // Shutdown ends the queued jobs itself
      job = std::move(queue_.front());
      queue_.pop_front();
    }
    Run(std::move(job));
  }
}

v1::TrainingJob JobManager::EndQueuedJob(Job& job, const std::string& reason) {
  v1::TrainingJob& r = job.record;
  r.set_state(v1::JOB_STATE_CANCELLED);
  r.set_error(absl::StrCat(reason, " while the job was queued; nothing was trained"));
  *r.mutable_finished() = ToProtoTimestamp(absl::Now());
  --active_;
  Publish(job);
  return r;
}

// The job an earlier Train with the same idempotency key started, if any. Requires mu_.
absl::StatusOr<std::optional<v1::TrainingJob>> JobManager::FindByRequestId(
    const v1::TrainRequest& request) const {
  if (request.request_id().empty()) return std::nullopt;
  for (const auto& [id, job] : jobs_) {
    if (job->record.request_id() != request.request_id()) continue;
    if (job->record.model_name() != request.model_name()) {
      return absl::AlreadyExistsError(absl::StrCat(
          "request_id: ", QuoteForMessage(request.request_id()), " was already used by job ", id,
          " for model '", job->record.model_name(), "'; use a new key for a new request"));
    }
    return job->record;
  }
  return std::nullopt;
}

absl::StatusOr<v1::TrainingJob> JobManager::Submit(const v1::TrainRequest& request) {
  INVNET_RETURN_IF_ERROR(ValidateName(request.model_name(), "model_name"));
  if (!request.request_id().empty()) {
    INVNET_RETURN_IF_ERROR(ValidateRequestId(request.request_id(), "request_id"));
    absl::MutexLock lock(&mu_);
    INVNET_ASSIGN_OR_RETURN(std::optional<v1::TrainingJob> earlier, FindByRequestId(request));
    if (earlier.has_value()) return *std::move(earlier);  // a retry: nothing new starts
  }
  INVNET_ASSIGN_OR_RETURN(ResolvedTraining resolved,
                          ResolveTrainRequest(request, options_.limits));
  TrainingRequest train;
  train.problem = resolved.problem;
  train.architecture = resolved.architecture;
  train.training = resolved.training;
  at::Tensor samples;
  ProblemSize size = SizeOf(resolved.problem, resolved.architecture.dim);
  if (resolved.problem.dataset.has_value()) {
    DatasetRef& ref = *resolved.problem.dataset;
    INVNET_ASSIGN_OR_RETURN(DatasetInfo info, datasets_->Info(ref.name));
    size.dataset_rows = info.num_samples;
    INVNET_RETURN_IF_ERROR(CheckJobMemory(resolved, size, options_.max_job_memory_bytes));
    INVNET_ASSIGN_OR_RETURN(samples, datasets_->Load(ref.name));
    ref.num_samples = samples.size(0);
    ref.dim = samples.size(1);
    ref.fingerprint = DatasetFingerprint(samples);
    train.problem.dataset = ref;
    train.dataset_samples = samples;
  } else {
    INVNET_RETURN_IF_ERROR(CheckJobMemory(resolved, size, options_.max_job_memory_bytes));
  }
  INVNET_RETURN_IF_ERROR(ValidateTrainingRequest(train));

  // The job shows the weight it trains with (delta^2 by default), never the "default" marker.
  resolved.training.loss_weight =
      EffectiveLossWeight(resolved.training, resolved.problem.noise_level);
  auto job = std::make_shared<Job>();
  job->resolved = resolved;
  v1::TrainingJob& r = job->record;
  r.set_model_name(resolved.model_name);
  r.set_state(v1::JOB_STATE_QUEUED);
  r.set_total_steps(resolved.training.steps);
  r.set_preset(resolved.preset);
  r.set_request_id(request.request_id());
  EncodeProblem(resolved.problem, r.mutable_problem());
  EncodeArchitecture(resolved.architecture, r.mutable_architecture());
  EncodeTraining(resolved.training, r.mutable_training());
  r.set_target_space_reason(resolved.target_space_reason);
  for (std::string& warning : TrainingWarnings(resolved.problem, resolved.training)) {
    r.add_warnings(std::move(warning));
  }
  *r.mutable_created() = ToProtoTimestamp(absl::Now());
  {
    absl::MutexLock lock(&mu_);
    if (shutting_down_) return absl::UnavailableError("server is shutting down");
    // Checked again under the same lock as the insertion: two concurrent retries start one job.
    INVNET_ASSIGN_OR_RETURN(std::optional<v1::TrainingJob> earlier, FindByRequestId(request));
    if (earlier.has_value()) return *std::move(earlier);
    // Refused now rather than after the training (publication would refuse it then).
    if (models_->num_versions() + active_ >= models_->max_versions()) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "the repository already serves its maximum of ", models_->max_versions(),
          " model versions, counting running jobs (--max_models); delete some first"));
    }
    if (active_ >= options_.max_concurrent_jobs + options_.max_queued_jobs) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "the server already runs its maximum of ", options_.max_concurrent_jobs,
          " training jobs (--max_jobs) and has ", options_.max_queued_jobs,
          " more queued (--max_queued_jobs); retry when one finishes"));
    }
    std::random_device random;
    r.set_job_id(absl::StrFormat("job-%s-%04x%04x",
                                 absl::FormatTime("%Y%m%d-%H%M%S", absl::Now(), absl::UTCTimeZone()),
                                 random() & 0xffff, (counter_++) & 0xffff));
    jobs_[r.job_id()] = job;
    ++active_;
    for (const std::string& warning : r.warnings()) {
      LOG(WARNING) << "job " << r.job_id() << ": " << warning;
    }
    Persist(r);
    queue_.push_back(job);  // a free worker takes it at once
    return r;
  }
}

void JobManager::Run(std::shared_ptr<Job> job) {
  at::set_num_threads(options_.torch_threads);
  TrainingRequest train;
  {
    absl::MutexLock lock(&mu_);
    job->record.set_state(v1::JOB_STATE_RUNNING);
    train.problem = job->resolved.problem;
    train.architecture = job->resolved.architecture;
    train.training = job->resolved.training;
    Publish(*job);
  }
  // Loaded only now, so a queued job holds no dataset; the samples validated at Submit.
  absl::Status dataset_status = absl::OkStatus();
  if (train.problem.dataset.has_value()) {
    const DatasetRef& ref = *train.problem.dataset;
    absl::StatusOr<at::Tensor> samples = datasets_->Load(ref.name);
    dataset_status = samples.ok() ? CheckDatasetUnchanged(ref, *samples, "the job was submitted")
                                  : absl::FailedPreconditionError(absl::StrCat(
                                        "dataset '", ref.name, "' is gone: ",
                                        samples.status().message()));
    if (samples.ok()) train.dataset_samples = *std::move(samples);
  }
  Persist(job->record);
  LOG(INFO) << "job " << job->record.job_id() << " started: model " << job->record.model_name();

  TrainerCallbacks callbacks;
  callbacks.should_stop = [&job] { return job->cancel_requested.load(); };
  callbacks.on_progress = [this, &job](const TrainingProgress& p) {
    std::optional<v1::TrainingJob> to_persist;
    {
      absl::MutexLock lock(&mu_);
      v1::TrainingJob& r = job->record;
      r.set_step(p.step);
      r.set_loss(p.loss);
      r.set_learning_rate(p.learning_rate);
      r.set_elapsed_seconds(p.elapsed_seconds);
      r.set_eta_seconds(p.eta_seconds);
      if (p.validation.has_value()) SetValidation(p.step, *p.validation, r.mutable_last_validation());
      const absl::Time now = absl::Now();
      if (p.validation.has_value() || now - job->last_publish >= options_.progress_interval) {
        Publish(*job);
      }
      if (now - job->last_persist >= options_.persist_interval) {
        job->last_persist = now;
        to_persist = r;
      }
    }
    if (to_persist.has_value()) Persist(*to_persist);
  };

  absl::StatusOr<Checkpoint> trained =
      dataset_status.ok() ? Train(train, callbacks) : absl::StatusOr<Checkpoint>(dataset_status);
  train.dataset_samples = at::Tensor();
  absl::StatusOr<std::shared_ptr<const HostedModel>> published =
      absl::InternalError("not published");
  if (trained.ok()) {
    trained->labels["job_id"] = job->record.job_id();
    trained->labels["created_unix_ms"] = absl::StrCat(absl::ToUnixMillis(absl::Now()));
    published = models_->Publish(job->record.model_name(), *std::move(trained));
  } else {
    published = trained.status();
  }
  v1::TrainingJob final_record;
  {
    absl::MutexLock lock(&mu_);
    v1::TrainingJob& r = job->record;
    if (published.ok()) {
      r.set_state(v1::JOB_STATE_SUCCEEDED);
      r.set_published_version((*published)->version);
    } else if (published.status().code() == absl::StatusCode::kCancelled) {
      r.set_state(v1::JOB_STATE_CANCELLED);
      r.set_error(absl::StrCat(job->cancel_reason.empty() ? "cancelled" : job->cancel_reason, ": ",
                               published.status().message()));
    } else {
      r.set_state(v1::JOB_STATE_FAILED);
      r.set_error(published.status().ToString());
    }
    *r.mutable_finished() = ToProtoTimestamp(absl::Now());
    --active_;
    Publish(*job);
    final_record = r;
  }
  Persist(final_record);
  LOG(INFO) << "job " << final_record.job_id() << " finished: "
            << v1::JobState_Name(final_record.state()) << " " << final_record.error();
}

absl::StatusOr<v1::TrainingJob> JobManager::Get(const std::string& id) const {
  absl::MutexLock lock(&mu_);
  auto it = jobs_.find(id);
  if (it == jobs_.end()) return JobNotFound(id);
  return it->second->record;
}

std::vector<v1::TrainingJob> JobManager::List() const {
  std::vector<v1::TrainingJob> all;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [id, job] : jobs_) all.push_back(job->record);
  }
  std::sort(all.begin(), all.end(), [](const v1::TrainingJob& a, const v1::TrainingJob& b) {
    return FromProtoTimestamp(a.created()) > FromProtoTimestamp(b.created());
  });
  return all;
}

absl::StatusOr<v1::TrainingJob> JobManager::Cancel(const std::string& id) {
  absl::MutexLock lock(&mu_);
  auto it = jobs_.find(id);
  if (it == jobs_.end()) return JobNotFound(id);
  Job& job = *it->second;
  if (IsFinished(job.record.state())) {
    return absl::FailedPreconditionError(absl::StrCat(
        "job ", QuoteForMessage(id), " has already finished (",
        v1::JobState_Name(job.record.state()), ")"));
  }
  if (job.record.state() == v1::JOB_STATE_QUEUED) {
    auto queued = std::find(queue_.begin(), queue_.end(), it->second);
    if (queued != queue_.end()) {  // else a worker has just taken it: cancelled as running
      queue_.erase(queued);
      v1::TrainingJob record = EndQueuedJob(job, "cancelled by request");
      Persist(record);
      return record;
    }
  }
  job.cancel_reason = "cancelled by request";
  job.cancel_requested = true;
  return job.record;
}

absl::StatusOr<JobSnapshot> JobManager::WaitForChange(const std::string& id,
                                                      int64_t after_revision,
                                                      absl::Time deadline) const {
  absl::MutexLock lock(&mu_);
  auto it = jobs_.find(id);
  if (it == jobs_.end()) return JobNotFound(id);
  std::shared_ptr<Job> job = it->second;
  while (job->revision <= after_revision && !IsFinished(job->record.state())) {
    if (changed_.WaitWithDeadline(&mu_, deadline)) break;  // timed out
  }
  return JobSnapshot{job->record, job->revision, IsFinished(job->record.state())};
}

absl::Status JobManager::Watch(const std::string& id,
                              const std::function<bool(const v1::TrainingJob&)>& send,
                              const std::function<bool()>& cancelled,
                              absl::Duration poll) const {
  int64_t seen = -1;
  while (true) {
    INVNET_ASSIGN_OR_RETURN(JobSnapshot snapshot, WaitForChange(id, seen, absl::Now() + poll));
    if (cancelled && cancelled()) return absl::CancelledError("watch cancelled by the client");
    if (snapshot.revision > seen || snapshot.finished) {
      if (!send(snapshot.job)) return absl::CancelledError("the client went away");
      seen = snapshot.revision;
      if (snapshot.finished) return absl::OkStatus();
    }
  }
}

int JobManager::active_jobs() const {
  absl::MutexLock lock(&mu_);
  return active_;
}

void JobManager::Shutdown() {
  std::vector<std::thread> workers;
  std::vector<v1::TrainingJob> ended;
  {
    absl::MutexLock lock(&mu_);
    shutting_down_ = true;
    for (std::shared_ptr<Job>& job : queue_) ended.push_back(EndQueuedJob(*job, "server shut down"));
    queue_.clear();
    for (auto& [id, job] : jobs_) {
      if (!IsFinished(job->record.state())) {
        job->cancel_reason = "server shutting down";
        job->cancel_requested = true;
      }
    }
    workers.swap(workers_);
  }
  for (const v1::TrainingJob& record : ended) Persist(record);
  for (std::thread& worker : workers) worker.join();
  absl::MutexLock lock(&persist_mu_);
  for (const auto& [id, record] : unpersisted_) {
    absl::Status status = WriteRecord(record);
    if (!status.ok()) LOG(WARNING) << "job " << id << " could not be saved at shutdown: " << status;
  }
}

}  // namespace invnet::server
