#ifndef INVNET_SERVER_RECONSTRUCTION_CORE_H_
#define INVNET_SERVER_RECONSTRUCTION_CORE_H_

// The gRPC-free cores of invnet.v1.ReconstructionService (in the manner of TensorFlow
// Serving's predict_impl under its service): requests in, responses out, absl::Status back,
// with the codes of README "Error codes". Cancellation and deadlines arrive as `stop`, which
// the long computations poll between bounded pieces of work (any thread may call it). The
// service (reconstruction_service.h) only authorizes, calls these and maps the status.
//
// Besides what every call records (rpc_observer.h), Reconstruct and Forward record their rows,
// and Reconstruct its queue and solve times and iterations, into `metrics` (null: nowhere).
//
// Thread safety: every method may be called concurrently; concurrent Reconstructs for one
// model are merged by the batcher.

#include <functional>

#include "absl/status/status.h"
#include "invnet/v1/reconstruction_service.pb.h"
#include "server/dataset_store.h"
#include "server/metrics.h"
#include "server/model_repository.h"
#include "server/reconstruct_batcher.h"
#include "server/service_limits.h"

namespace invnet::server {

class ReconstructionCore {
 public:
  // `models` and `datasets` (not null) and `metrics` (may be null) outlive the core.
  ReconstructionCore(const ModelRepository* models, const DatasetStore* datasets,
                     ServiceLimits limits, BatcherOptions batching, ServerMetrics* metrics);

  // x_hat = phi^-1(y) per sample, with the solver's per-sample diagnostics and, when asked,
  // the posterior std the network implies.
  absl::Status Reconstruct(const v1::ReconstructRequest& request, const std::function<bool()>& stop,
                           v1::ReconstructResponse* response);
  // phi(x), or the exact A x or A^T A x the request's map names.
  absl::Status Forward(const v1::ForwardRequest& request, const std::function<bool()>& stop,
                       v1::ForwardResponse* response);
  // The exact references (posterior mean and std, MAP, Wiener, A^+ y) the request asks for
  // (all when it names none); FAILED_PRECONDITION for models without a Gaussian-mixture prior
  // or without noise.
  absl::Status Estimate(const v1::EstimateRequest& request, const std::function<bool()>& stop,
                        v1::EstimateResponse* response);
  // Seeded held-out pairs (x, A x + noise) from the model's prior, or from the part of its
  // dataset the trainer held out (SplitDataset).
  absl::Status DrawTestPairs(const v1::DrawTestPairsRequest& request,
                             const std::function<bool()>& stop,
                             v1::DrawTestPairsResponse* response);
  // The paper's metrics of each requested model (and of the exact references, where the
  // problem has them) on DrawTestPairs' pairs of the first model (models/evaluation.h).
  // INVALID_ARGUMENT naming models[i] for a model of another problem, a repeated list over 64 or
  // an empty one; DrawTestPairs' codes for the count.
  absl::Status Evaluate(const v1::EvaluateRequest& request, const std::function<bool()>& stop,
                        v1::EvaluateResponse* response);

 private:
  const ModelRepository* models_;
  const DatasetStore* datasets_;
  const ServiceLimits limits_;
  ReconstructBatcher batcher_;  // merges concurrent Reconstruct requests per model
  ServerMetrics* const metrics_;
};

}  // namespace invnet::server

#endif  // INVNET_SERVER_RECONSTRUCTION_CORE_H_
