#ifndef INVNET_SERVER_SPEC_CODEC_H_
#define INVNET_SERVER_SPEC_CODEC_H_

// The RPC contract's problem, architecture and training messages <-> invnet::models structs,
// including how a TrainRequest's preset and overrides resolve into one complete request.

#include <string>

#include "absl/status/statusor.h"
#include "invnet/v1/model.pb.h"
#include "invnet/v1/problem.pb.h"
#include "invnet/v1/training_service.pb.h"
#include "models/iresnet.h"
#include "models/problem.h"
#include "server/tensor_codec.h"

namespace invnet::server {

// Field-level decoding; the models layer validates the values (LinearOperator::Create,
// GaussianMixture::Create, ValidateTrainingRequest). INVALID_ARGUMENT naming the field.
absl::StatusOr<ProblemSpec> DecodeProblem(const v1::Problem& proto, const TensorLimits& limits);
void EncodeProblem(const ProblemSpec& spec, v1::Problem* proto);
void EncodeArchitecture(const IResNetConfig& config, v1::Architecture* proto);
void EncodeTraining(const TrainingSpec& spec, v1::Training* proto);

// A TrainRequest with its preset and defaults applied.
struct ResolvedTraining {
  std::string model_name;
  std::string preset;  // empty when the problem was given explicitly
  ProblemSpec problem;
  IResNetConfig architecture;
  TrainingSpec training;
  // Why training.target_space was chosen when the request left it unset (TrainingJob's
  // target_space_reason); empty when it was set.
  std::string target_space_reason;
};

// Starts from the preset (or the built-in defaults), replaces the problem when one is given,
// applies every set field of architecture and training, sets architecture.dim to the problem's
// signal dimension, and picks the loss's default target space when none is given.
// INVALID_ARGUMENT: unknown preset, missing loss, missing problem, malformed fields. The model
// name and the values themselves are validated by the caller.
absl::StatusOr<ResolvedTraining> ResolveTrainRequest(const v1::TrainRequest& request,
                                                     const TensorLimits& limits);

}  // namespace invnet::server

#endif  // INVNET_SERVER_SPEC_CODEC_H_
