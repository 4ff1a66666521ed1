#ifndef INVNET_SERVER_JOB_MANAGER_H_
#define INVNET_SERVER_JOB_MANAGER_H_

// Training jobs: a fixed pool of `max_concurrent_jobs` workers runs models::Train beside
// serving, and a job that succeeds publishes the next version of its model. A job submitted
// while every worker is busy waits, in state QUEUED, in first-in first-out order; at most
// `max_queued_jobs` wait, and Submit answers RESOURCE_EXHAUSTED beyond that. A queued job holds
// no dataset (it loads its samples when it starts and fails if they changed meanwhile) and can
// be cancelled at once. Queued jobs do not survive a restart: a clean shutdown cancels them
// ("server shutting down"), a crash leaves records that the next start marks FAILED.
//
// Every job has a record <root>/jobs/<id>.job (an archive holding the serialised
// invnet.v1.TrainingJob), rewritten atomically on every state change and every few seconds of
// progress. A server that restarts finds the records of jobs that were queued or running and
// marks them FAILED ("server restarted"); their partial output was never published (publication
// is the last step and is atomic, model_repository.h).
//
// Thread safety: all methods may be called concurrently.

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "invnet/v1/training_service.pb.h"
#include "server/dataset_store.h"
#include "server/model_repository.h"
#include "server/tensor_codec.h"

namespace invnet::server {

struct JobManagerOptions {
  int max_concurrent_jobs = 2;  // workers (invnet-server --max_jobs)
  int max_queued_jobs = 16;     // jobs that may wait for a worker (--max_queued_jobs)
  // LibTorch intra-op threads each job uses.
  int torch_threads = 1;
  // How often a running job's record is rewritten, and how often watchers are woken.
  absl::Duration persist_interval = absl::Seconds(2);
  absl::Duration progress_interval = absl::Milliseconds(200);
  TensorLimits limits;
  // Peak memory one job may need, as models/memory_estimate.h estimates it from the request
  // (invnet-server --max_job_memory_mb); 0 = no limit.
  int64_t max_job_memory_bytes = 0;
  // For invnet-server --check_repository: change nothing on disk. Records of jobs that were
  // running are listed in leftovers() instead of being marked FAILED (the checker then only
  // reads the manager; it never submits jobs).
  bool read_only = false;
};

// The default of --max_job_memory_mb: half of the least of the machine's physical memory, the
// process's RLIMIT_AS and RLIMIT_DATA, and its cgroup's memory.max; 0 (no limit) when none is
// known.
int64_t DefaultMaxJobMemoryBytes();

struct JobSnapshot {
  v1::TrainingJob job;
  int64_t revision = 0;  // increases with every published change
  bool finished = false;
};

class JobManager {
 public:
  // Loads the job records under <root>/jobs, failing those a restart interrupted.
  static absl::StatusOr<std::unique_ptr<JobManager>> Create(const std::string& root,
                                                            ModelRepository* models,
                                                            DatasetStore* datasets,
                                                            const JobManagerOptions& options);
  ~JobManager();  // Shutdown()

  const std::vector<std::string>& load_problems() const { return load_problems_; }
  // Temporary files and interrupted jobs left on disk (read_only Create only).
  const std::vector<std::string>& leftovers() const { return leftovers_; }

  // Validates the request completely, then starts the job and returns its record at once.
  // With request.request_id() set and already used by a job (of any state, also one loaded
  // from its record after a restart), returns that job's record instead and starts nothing.
  // INVALID_ARGUMENT (bad request), NOT_FOUND (unknown dataset), RESOURCE_EXHAUSTED (too many
  // jobs, or a job whose estimated memory exceeds max_job_memory_bytes: refused before the
  // dataset is loaded or anything of the job is allocated), UNAVAILABLE (shutting down),
  // ALREADY_EXISTS (request_id used for another model).
  absl::StatusOr<v1::TrainingJob> Submit(const v1::TrainRequest& request);
  absl::StatusOr<v1::TrainingJob> Get(const std::string& id) const;  // NOT_FOUND
  std::vector<v1::TrainingJob> List() const;                          // newest first
  // FAILED_PRECONDITION when the job has finished. A queued job ends CANCELLED at once (the
  // record returned says so), a running one within one step.
  absl::StatusOr<v1::TrainingJob> Cancel(const std::string& id);
  // Blocks until the job's revision exceeds `after_revision` or `deadline` passes; returns the
  // current snapshot either way. NOT_FOUND for an unknown job.
  absl::StatusOr<JobSnapshot> WaitForChange(const std::string& id, int64_t after_revision,
                                            absl::Time deadline) const;
  // WatchTrainingJob without gRPC: sends the job's record, then each published change, and
  // returns OK after sending the finished record. Wakes at least every `poll` to ask `cancelled`
  // (may be empty), so a caller who left does not hold a thread for long: CANCELLED when it
  // says so or when `send` returns false (the receiver went away). NOT_FOUND for an unknown job.
  absl::Status Watch(const std::string& id,
                     const std::function<bool(const v1::TrainingJob&)>& send,
                     const std::function<bool()>& cancelled,
                     absl::Duration poll = absl::Milliseconds(500)) const;

  // Running + queued jobs.
  int active_jobs() const;
  // Cancels every queued and running job ("server shutting down"), waits for the workers and
  // persists the records. Later Submits answer UNAVAILABLE. Idempotent.
  void Shutdown();

 private:
  struct Job;
  JobManager(std::string dir, ModelRepository* models, DatasetStore* datasets,
             JobManagerOptions options);
  // A worker: runs queued jobs, oldest first, until Shutdown.
  void Work();
  void Run(std::shared_ptr<Job> job);
  // Ends a job that never ran (cancelled while queued) with `reason`; returns its record.
  v1::TrainingJob EndQueuedJob(Job& job, const std::string& reason)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Rewrites the job's record from a copy taken under the lock.
  void Persist(const v1::TrainingJob& record);
  // The record of the job an earlier request with request.request_id() started (nullopt when
  // none or no key); ALREADY_EXISTS when that job is for another model.
  absl::StatusOr<std::optional<v1::TrainingJob>> FindByRequestId(
      const v1::TrainRequest& request) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Marks a change for watchers. Requires mu_.
  void Publish(Job& job) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string dir_;
  ModelRepository* const models_;
  DatasetStore* const datasets_;
  const JobManagerOptions options_;
  std::vector<std::string> load_problems_;
  std::vector<std::string> leftovers_;

  absl::Status WriteRecord(const v1::TrainingJob& record) const;

  // Serialises record writes; the latest record of each job whose write failed.
  absl::Mutex persist_mu_;
  std::map<std::string, v1::TrainingJob> unpersisted_ ABSL_GUARDED_BY(persist_mu_);
  mutable absl::Mutex mu_;
  mutable absl::CondVar changed_;
  std::map<std::string, std::shared_ptr<Job>> jobs_ ABSL_GUARDED_BY(mu_);
  std::deque<std::shared_ptr<Job>> queue_ ABSL_GUARDED_BY(mu_);  // QUEUED jobs, oldest first
  std::vector<std::thread> workers_ ABSL_GUARDED_BY(mu_);        // joined by Shutdown
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;
  int active_ ABSL_GUARDED_BY(mu_) = 0;  // queued + running
  uint64_t counter_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace invnet::server

#endif  // INVNET_SERVER_JOB_MANAGER_H_
