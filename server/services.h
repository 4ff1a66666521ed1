#ifndef INVNET_SERVER_SERVICES_H_
#define INVNET_SERVER_SERVICES_H_

// The RPC adapters: each method decodes and validates its request, calls the gRPC-free core
// (ModelRepository, JobManager, DatasetStore, invnet::models) and encodes the response; statuses
// cross into gRPC in one place (status_util.h). Deadlines and cancellation reach the core as a
// plain stop predicate. Every handler first checks the caller's token with `auth` (auth.h; not
// null, owned by the caller, outliving the service).

#include <atomic>
#include <map>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "invnet/v1/dataset_service.grpc.pb.h"
#include "invnet/v1/model_service.grpc.pb.h"
#include "invnet/v1/reconstruction_service.grpc.pb.h"
#include "invnet/v1/training_service.grpc.pb.h"
#include "server/auth.h"
#include "server/dataset_store.h"
#include "server/job_manager.h"
#include "server/metrics.h"
#include "server/model_repository.h"
#include "server/reconstruct_batcher.h"
#include "server/tensor_codec.h"

namespace invnet::server {

// Limits every adapter enforces.
struct ServiceLimits {
  TensorLimits tensors;
  int64_t max_dataset_bytes = int64_t{1} << 30;
};

// Besides what every call records (rpc_observer.h), Reconstruct and Forward record their rows,
// and Reconstruct its queue and solve times and iterations, into `metrics` (null: nowhere).
class ReconstructionServiceImpl final : public v1::ReconstructionService::Service {
 public:
  ReconstructionServiceImpl(const ModelRepository* models, const DatasetStore* datasets,
                            ServiceLimits limits, const Authorizer* auth,
                            BatcherOptions batching = {}, ServerMetrics* metrics = nullptr)
      : models_(models),
        datasets_(datasets),
        limits_(limits),
        auth_(auth),
        batcher_(batching),
        metrics_(metrics) {}
  grpc::Status Reconstruct(grpc::ServerContext* context, const v1::ReconstructRequest* request,
                           v1::ReconstructResponse* response) override;
  grpc::Status Forward(grpc::ServerContext* context, const v1::ForwardRequest* request,
                       v1::ForwardResponse* response) override;
  grpc::Status Estimate(grpc::ServerContext* context, const v1::EstimateRequest* request,
                        v1::EstimateResponse* response) override;
  grpc::Status DrawTestPairs(grpc::ServerContext* context,
                             const v1::DrawTestPairsRequest* request,
                             v1::DrawTestPairsResponse* response) override;

 private:
  const ModelRepository* models_;
  const DatasetStore* datasets_;
  const ServiceLimits limits_;
  const Authorizer* auth_;
  ReconstructBatcher batcher_;  // merges concurrent Reconstruct requests per model
  ServerMetrics* const metrics_;
};

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

class ModelServiceImpl final : public v1::ModelService::Service {
 public:
  ModelServiceImpl(ModelRepository* models, const Authorizer* auth)
      : models_(models), auth_(auth) {}
  grpc::Status ListModels(grpc::ServerContext* context, const v1::ListModelsRequest* request,
                          v1::ListModelsResponse* response) override;
  grpc::Status GetModel(grpc::ServerContext* context, const v1::GetModelRequest* request,
                        v1::GetModelResponse* response) override;
  grpc::Status DeleteModel(grpc::ServerContext* context, const v1::DeleteModelRequest* request,
                           v1::DeleteModelResponse* response) override;

 private:
  ModelRepository* models_;
  const Authorizer* auth_;
};

class DatasetServiceImpl final : public v1::DatasetService::Service {
 public:
  DatasetServiceImpl(DatasetStore* datasets, ServiceLimits limits, const Authorizer* auth)
      : datasets_(datasets), limits_(limits), auth_(auth) {}
  grpc::Status UploadDataset(grpc::ServerContext* context,
                             grpc::ServerReader<v1::UploadDatasetRequest>* reader,
                             v1::UploadDatasetResponse* response) override;
  grpc::Status ListDatasets(grpc::ServerContext* context, const v1::ListDatasetsRequest* request,
                            v1::ListDatasetsResponse* response) override;
  grpc::Status DeleteDataset(grpc::ServerContext* context,
                             const v1::DeleteDatasetRequest* request,
                             v1::DeleteDatasetResponse* response) override;

 private:
  DatasetStore* datasets_;
  const ServiceLimits limits_;
  const Authorizer* auth_;
};

// The description of a hosted model version that GetModel and ListModels return.
void EncodeModelVersion(const HostedModel& model, v1::ModelVersion* proto);

}  // namespace invnet::server

#endif  // INVNET_SERVER_SERVICES_H_
