#ifndef INVNET_SERVER_RECONSTRUCTION_SERVICE_H_
#define INVNET_SERVER_RECONSTRUCTION_SERVICE_H_

// invnet.v1.ReconstructionService: Reconstruct, Forward, Estimate, DrawTestPairs, Evaluate.
// Like every RPC adapter, each method decodes and validates its request, calls the gRPC-free
// core and encodes the response; statuses cross into gRPC in one place (status_util.h), and
// deadlines and cancellation reach the core as a plain stop predicate. Every handler first
// checks the caller's token with `auth` (auth.h; not null, owned by the caller, outliving the
// service).

#include "invnet/v1/reconstruction_service.grpc.pb.h"
#include "server/auth.h"
#include "server/dataset_store.h"
#include "server/metrics.h"
#include "server/model_repository.h"
#include "server/reconstruct_batcher.h"
#include "server/reconstruction_core.h"
#include "server/service_limits.h"

namespace invnet::server {

// Authorizes each call, runs its core (reconstruction_core.h) with a stop predicate for the
// call's cancellation and deadline, and maps the status.
class ReconstructionServiceImpl final : public v1::ReconstructionService::Service {
 public:
  ReconstructionServiceImpl(const ModelRepository* models, const DatasetStore* datasets,
                            ServiceLimits limits, const Authorizer* auth,
                            BatcherOptions batching = {}, ServerMetrics* metrics = nullptr)
      : auth_(auth), core_(models, datasets, limits, batching, metrics) {}
  grpc::Status Reconstruct(grpc::ServerContext* context, const v1::ReconstructRequest* request,
                           v1::ReconstructResponse* response) override;
  grpc::Status Forward(grpc::ServerContext* context, const v1::ForwardRequest* request,
                       v1::ForwardResponse* response) override;
  grpc::Status Estimate(grpc::ServerContext* context, const v1::EstimateRequest* request,
                        v1::EstimateResponse* response) override;
  grpc::Status DrawTestPairs(grpc::ServerContext* context, const v1::DrawTestPairsRequest* request,
                             v1::DrawTestPairsResponse* response) override;
  grpc::Status Evaluate(grpc::ServerContext* context, const v1::EvaluateRequest* request,
                        v1::EvaluateResponse* response) override;

 private:
  const Authorizer* auth_;
  ReconstructionCore core_;
};

}  // namespace invnet::server

#endif  // INVNET_SERVER_RECONSTRUCTION_SERVICE_H_
