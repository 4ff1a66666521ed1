#ifndef INVNET_SERVER_TRAINING_SERVICE_H_
#define INVNET_SERVER_TRAINING_SERVICE_H_

// invnet.v1.TrainingService: Train and the job resource (Get, List, Cancel, Watch).
// Like every RPC adapter, each method decodes and validates its request, calls the gRPC-free
// core and encodes the response; statuses cross into gRPC in one place (status_util.h), and
// deadlines and cancellation reach the core as a plain stop predicate. Every handler first
// checks the caller's token with `auth` (auth.h; not null, owned by the caller, outliving the
// service).

#include <map>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "invnet/v1/training_service.grpc.pb.h"
#include "server/auth.h"
#include "server/job_manager.h"

namespace invnet::server {

// Bounds on open WatchTrainingJob streams (each holds a thread of the synchronous server):
// `limits.total` at once, and `limits.per_connection` from one client connection (told apart by
// its peer address), so one client cannot take every slot. One more is answered
// RESOURCE_EXHAUSTED naming the flag.
struct WatchStreamLimits {
  int total = 256;
  int per_connection = 32;
};

class TrainingServiceImpl final : public v1::TrainingService::Service {
 public:
  TrainingServiceImpl(JobManager* jobs, const Authorizer* auth, WatchStreamLimits limits)
      : jobs_(jobs), auth_(auth), watch_limits_(limits) {}
  grpc::Status Train(grpc::ServerContext* context, const v1::TrainRequest* request,
                     v1::TrainResponse* response) override;
  grpc::Status GetTrainingJob(grpc::ServerContext* context,
                              const v1::GetTrainingJobRequest* request,
                              v1::GetTrainingJobResponse* response) override;
  grpc::Status ListTrainingJobs(grpc::ServerContext* context,
                                const v1::ListTrainingJobsRequest* request,
                                v1::ListTrainingJobsResponse* response) override;
  grpc::Status CancelTrainingJob(grpc::ServerContext* context,
                                 const v1::CancelTrainingJobRequest* request,
                                 v1::CancelTrainingJobResponse* response) override;
  grpc::Status WatchTrainingJob(grpc::ServerContext* context,
                                const v1::WatchTrainingJobRequest* request,
                                grpc::ServerWriter<v1::WatchTrainingJobResponse>* writer) override;

 private:
  // OK and a slot taken, or RESOURCE_EXHAUSTED; ReleaseWatchSlot gives it back.
  absl::Status TakeWatchSlot(const std::string& peer);
  void ReleaseWatchSlot(const std::string& peer);

  JobManager* jobs_;
  const Authorizer* auth_;
  const WatchStreamLimits watch_limits_;
  absl::Mutex watch_mu_;
  int open_watch_streams_ ABSL_GUARDED_BY(watch_mu_) = 0;
  std::map<std::string, int> watch_streams_by_peer_ ABSL_GUARDED_BY(watch_mu_);
};

}  // namespace invnet::server

#endif  // INVNET_SERVER_TRAINING_SERVICE_H_
