#include "server/hosted_model.h"

#include "absl/strings/numbers.h"
#include "models/priors.h"
#include "proto/base/status_macros.h"

namespace invnet::server {

absl::StatusOr<std::shared_ptr<HostedModel>> HostedModel::Build(std::string name,
                                                                int64_t version,
                                                                Checkpoint checkpoint,
                                                                int64_t size_bytes) {
  auto model = std::make_shared<HostedModel>();
  model->name = std::move(name);
  model->version = version;
  model->size_bytes = size_bytes;
  INVNET_ASSIGN_OR_RETURN(std::unique_ptr<IResNet> net, RestoreNetwork(checkpoint));
  INVNET_ASSIGN_OR_RETURN(model->network, FrozenIResNet::Create(*net));
  model->certificate = net->Certify();
  INVNET_ASSIGN_OR_RETURN(std::unique_ptr<LinearOperator> op,
                          LinearOperator::Create(checkpoint.problem.op));
  model->op = std::move(op);
  if (model->op->input_dim() != checkpoint.architecture.dim) {
    return absl::InvalidArgumentError("checkpoint: operator and network dimensions differ");
  }
  if (checkpoint.problem.prior.has_value()) {
    INVNET_ASSIGN_OR_RETURN(model->prior, GaussianMixture::Create(*checkpoint.problem.prior));
    if (checkpoint.problem.noise_level > 0) {
      INVNET_ASSIGN_OR_RETURN(model->references,
                              BayesEstimators::Create(*model->op, *model->prior,
                                                      checkpoint.problem.noise_level));
    }
  }
  int64_t created_ms = 0;
  auto it = checkpoint.labels.find("created_unix_ms");
  if (it != checkpoint.labels.end() && absl::SimpleAtoi(it->second, &created_ms)) {
    model->created = absl::FromUnixMillis(created_ms);
  } else {
    model->created = absl::UnixEpoch();
  }
  checkpoint.state.clear();
  model->record = std::move(checkpoint);
  return model;
}

}  // namespace invnet::server
