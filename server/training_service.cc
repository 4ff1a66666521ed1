#include "server/training_service.h"

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "server/names.h"
#include "server/status_util.h"

namespace invnet::server {

grpc::Status TrainingServiceImpl::Train(grpc::ServerContext* context,
                                        const v1::TrainRequest* request,
                                        v1::TrainResponse* response) {
  if (absl::Status s = auth_->Check(*context, "/invnet.v1.TrainingService/Train"); !s.ok())
    return ToGrpcStatus(s);
  absl::StatusOr<v1::TrainingJob> job = jobs_->Submit(*request);
  if (!job.ok()) return ToGrpcStatus(job.status());
  *response->mutable_job() = *std::move(job);
  return grpc::Status::OK;
}

grpc::Status TrainingServiceImpl::GetTrainingJob(grpc::ServerContext* context,
                                                 const v1::GetTrainingJobRequest* request,
                                                 v1::GetTrainingJobResponse* response) {
  if (absl::Status s = auth_->Check(*context, "/invnet.v1.TrainingService/GetTrainingJob"); !s.ok())
    return ToGrpcStatus(s);
  if (absl::Status s = ValidateName(request->job_id(), "job_id"); !s.ok()) return ToGrpcStatus(s);
  absl::StatusOr<v1::TrainingJob> job = jobs_->Get(request->job_id());
  if (!job.ok()) return ToGrpcStatus(job.status());
  *response->mutable_job() = *std::move(job);
  return grpc::Status::OK;
}

grpc::Status TrainingServiceImpl::ListTrainingJobs(grpc::ServerContext* context,
                                                   const v1::ListTrainingJobsRequest* request,
                                                   v1::ListTrainingJobsResponse* response) {
  if (absl::Status s = auth_->Check(*context, "/invnet.v1.TrainingService/ListTrainingJobs");
      !s.ok())
    return ToGrpcStatus(s);
  for (v1::TrainingJob& job : jobs_->List()) *response->add_jobs() = std::move(job);
  return grpc::Status::OK;
}

grpc::Status TrainingServiceImpl::CancelTrainingJob(grpc::ServerContext* context,
                                                    const v1::CancelTrainingJobRequest* request,
                                                    v1::CancelTrainingJobResponse* response) {
  if (absl::Status s = auth_->Check(*context, "/invnet.v1.TrainingService/CancelTrainingJob");
      !s.ok())
    return ToGrpcStatus(s);
  if (absl::Status s = ValidateName(request->job_id(), "job_id"); !s.ok()) return ToGrpcStatus(s);
  absl::StatusOr<v1::TrainingJob> job = jobs_->Cancel(request->job_id());
  if (!job.ok()) return ToGrpcStatus(job.status());
  *response->mutable_job() = *std::move(job);
  return grpc::Status::OK;
}

absl::Status TrainingServiceImpl::TakeWatchSlot(const std::string& peer) {
  absl::MutexLock lock(&watch_mu_);
  if (open_watch_streams_ >= watch_limits_.total) {
    return absl::ResourceExhaustedError(
        absl::StrCat("the server already has its maximum of ", watch_limits_.total,
                     " open WatchTrainingJob streams (--max_watch_streams): retry later, or "
                     "poll GetTrainingJob"));
  }
  int& mine = watch_streams_by_peer_[peer];
  if (mine >= watch_limits_.per_connection) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "this connection already has its maximum of ", watch_limits_.per_connection,
        " open WatchTrainingJob streams (--max_watch_streams_per_connection): close one, or "
        "poll GetTrainingJob"));
  }
  ++mine;
  ++open_watch_streams_;
  return absl::OkStatus();
}

void TrainingServiceImpl::ReleaseWatchSlot(const std::string& peer) {
  absl::MutexLock lock(&watch_mu_);
  --open_watch_streams_;
  auto it = watch_streams_by_peer_.find(peer);
  if (it != watch_streams_by_peer_.end() && --it->second <= 0) watch_streams_by_peer_.erase(it);
}

grpc::Status TrainingServiceImpl::WatchTrainingJob(
    grpc::ServerContext* context, const v1::WatchTrainingJobRequest* request,
    grpc::ServerWriter<v1::WatchTrainingJobResponse>* writer) {
  if (absl::Status s = auth_->Check(*context, "/invnet.v1.TrainingService/WatchTrainingJob");
      !s.ok())
    return ToGrpcStatus(s);
  if (absl::Status s = ValidateName(request->job_id(), "job_id"); !s.ok()) return ToGrpcStatus(s);
  // Each open stream holds a thread of the synchronous server: bounded, released on return.
  const std::string peer = context->peer();
  if (absl::Status s = TakeWatchSlot(peer); !s.ok()) return ToGrpcStatus(s);
  const absl::Cleanup release = [this, &peer] { ReleaseWatchSlot(peer); };
  const auto send = [writer](const v1::TrainingJob& job) {
    v1::WatchTrainingJobResponse update;
    *update.mutable_job() = job;
    return writer->Write(update);
  };
  return ToGrpcStatus(
      jobs_->Watch(request->job_id(), send, [context] { return context->IsCancelled(); }));
}

}  // namespace invnet::server
