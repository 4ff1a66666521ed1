#ifndef INVNET_SERVER_HOSTED_MODEL_H_
#define INVNET_SERVER_HOSTED_MODEL_H_

// A published model version, loaded and ready to serve. Immutable after Build, shared between
// requests as std::shared_ptr<const HostedModel>, so readers need no lock and a deleted version
// stays alive until its last request ends.

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "models/checkpoint.h"
#include "models/estimators.h"
#include "models/inverse.h"
#include "models/operators.h"
#include "models/priors.h"

namespace invnet::server {

struct HostedModel {
  std::string name;
  int64_t version = 0;
  Checkpoint record;  // everything the checkpoint says, without the weights (state is cleared)
  LipschitzCertificate certificate;  // re-certified when built
  std::shared_ptr<const FrozenIResNet> network;
  std::shared_ptr<const LinearOperator> op;
  // The prior, when the problem has one (else the model was trained on a dataset).
  std::shared_ptr<const GaussianMixture> prior;
  // The exact references; null unless the prior is a Gaussian mixture and delta > 0.
  std::shared_ptr<const BayesEstimators> references;
  int64_t size_bytes = 0;
  absl::Time created;

  TargetSpace target_space() const { return record.training.target_space; }
  int64_t signal_dim() const { return op->input_dim(); }
  int64_t measurement_dim() const { return op->output_dim(); }

  // Restores and certifies the network (models/checkpoint.h codes) and builds the operator and
  // references. The checkpoint's weights are dropped afterwards.
  static absl::StatusOr<std::shared_ptr<HostedModel>> Build(std::string name, int64_t version,
                                                            Checkpoint checkpoint,
                                                            int64_t size_bytes);
};

}  // namespace invnet::server

#endif  // INVNET_SERVER_HOSTED_MODEL_H_
