#include "server/reconstruction_core.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <memory>
#include <set>

#include "absl/strings/str_cat.h"
#include "models/evaluation.h"
#include "models/losses.h"
#include "models/posterior_spread.h"
#include "models/seeds.h"
#include "models/torch_status.h"
#include "models/trainer.h"
#include "proto/base/status_macros.h"
#include "server/names.h"

namespace invnet::server {
namespace {

absl::StatusOr<InverseOptions> DecodeSolver(const v1::SolverOptions& proto) {
  InverseOptions options;
  if (proto.has_tolerance()) options.tolerance = proto.tolerance();
  if (proto.has_max_iterations()) options.max_iterations = proto.max_iterations();
  if (proto.has_anderson()) options.anderson = proto.anderson();
  if (proto.has_anderson_memory()) options.anderson_memory = proto.anderson_memory();
  INVNET_RETURN_IF_ERROR(ValidateInverseOptions(options));
  return options;
}

absl::StatusOr<std::shared_ptr<const HostedModel>> Lookup(const ModelRepository& models,
                                                          const std::string& name,
                                                          int64_t version) {
  INVNET_RETURN_IF_ERROR(ValidateName(name, "model"));
  return models.Get(name, version);
}

// What the model was trained for, as the posterior spread needs it.
PosteriorSpreadSetup SpreadSetupOf(const HostedModel& model) {
  PosteriorSpreadSetup setup;
  setup.loss = model.record.training.loss;
  setup.target_space = model.target_space();
  setup.loss_weight = model.record.training.loss_weight;
  setup.noise_level = model.record.problem.noise_level;
  return setup;
}

}  // namespace

ReconstructionCore::ReconstructionCore(const ModelRepository* models, const DatasetStore* datasets,
                                       ServiceLimits limits, BatcherOptions batching,
                                       ServerMetrics* metrics)
    : models_(models),
      datasets_(datasets),
      limits_(limits),
      batcher_(batching),
      metrics_(metrics) {}

absl::Status ReconstructionCore::Reconstruct(const v1::ReconstructRequest& request,
                                             const std::function<bool()>& stop,
                                             v1::ReconstructResponse* response) {
  INVNET_ASSIGN_OR_RETURN(auto model, Lookup(*models_, request.model(), request.version()));
  INVNET_ASSIGN_OR_RETURN(InverseOptions options, DecodeSolver(request.solver()));
  if (request.posterior_std()) {
    // Refused before the solve: the model's loss and space decide whether it is defined.
    INVNET_RETURN_IF_ERROR(PosteriorSpreadMethodFor(SpreadSetupOf(*model), *model->op).status());
  }
  INVNET_ASSIGN_OR_RETURN(
      at::Tensor y, DecodeBatch(request.measurements(), model->measurement_dim(), "measurements",
                                limits_.tensors));
  if (metrics_ != nullptr) metrics_->RecordRequestRows(Rpc::kReconstruct, y.size(0));
  INVNET_ASSIGN_OR_RETURN(
      at::Tensor target,
      GuardTorchOr<at::Tensor>("Reconstruct", [&]() -> absl::StatusOr<at::Tensor> {
        at::NoGradGuard no_grad;
        return TargetFor(*model->op, model->target_space(), y);
      }));
  // `model` holds the network alive while the batcher solves with it.
  SolveTiming timing;
  INVNET_ASSIGN_OR_RETURN(InverseResult result,
                          batcher_.Solve(*model->network, target, options, stop, &timing));
  if (request.posterior_std()) {
    // After the solve, outside the batcher: in chunks of bounded memory, polling for
    // cancellation between them (models/posterior_spread.h).
    INVNET_ASSIGN_OR_RETURN(
        PosteriorSpread spread,
        NetworkPosteriorSpread(*model->network, *model->op, SpreadSetupOf(*model), result.x, stop));
    EncodeTensor(spread.std, response->mutable_posterior_std());
    response->set_posterior_std_method(std::string(PosteriorSpreadMethodName(spread.method)));
  }
  response->set_model(model->name);
  response->set_version(model->version);
  EncodeTensor(result.x, response->mutable_reconstructions());
  const int64_t batch = result.x.size(0);
  const int64_t* iterations = result.iterations.data_ptr<int64_t>();
  const bool* converged = result.converged.data_ptr<bool>();
  const double* bound = result.error_bound.data_ptr<double>();
  const double* residual = result.forward_residual.data_ptr<double>();
  if (metrics_ != nullptr) {
    metrics_->RecordReconstructTiming(timing.queue, timing.solve,
                                      timing.led ? timing.solve_rows : 0);
    metrics_->RecordIterations(iterations, batch);
  }
  response->mutable_iterations()->Add(iterations, iterations + batch);
  response->mutable_converged()->Add(converged, converged + batch);
  response->mutable_error_bound()->Add(bound, bound + batch);
  response->mutable_forward_residual()->Add(residual, residual + batch);
  return absl::OkStatus();
}

absl::Status ReconstructionCore::Forward(const v1::ForwardRequest& request,
                                         const std::function<bool()>& stop,
                                         v1::ForwardResponse* response) {
  INVNET_ASSIGN_OR_RETURN(auto model, Lookup(*models_, request.model(), request.version()));
  INVNET_ASSIGN_OR_RETURN(at::Tensor x, DecodeBatch(request.signals(), model->signal_dim(),
                                                    "signals", limits_.tensors));
  if (metrics_ != nullptr) metrics_->RecordRequestRows(Rpc::kForward, x.size(0));
  INVNET_ASSIGN_OR_RETURN(at::Tensor out, model->network->Forward(x, stop));
  response->set_model(model->name);
  response->set_version(model->version);
  EncodeTensor(out, response->mutable_outputs());
  return absl::OkStatus();
}

absl::Status ReconstructionCore::Estimate(const v1::EstimateRequest& request,
                                          const std::function<bool()>& stop,
                                          v1::EstimateResponse* response) {
  INVNET_ASSIGN_OR_RETURN(auto model, Lookup(*models_, request.model(), request.version()));
  if (model->references == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("model '", model->name, "' version ", model->version,
                     model->record.problem.dataset.has_value()
                         ? " was trained on a dataset, not a Gaussian-mixture prior"
                         : " has noise level 0",
                     ": the exact posterior references are not defined for it"));
  }
  std::set<int> wanted;
  for (int e : request.estimators()) {
    if (e <= v1::ESTIMATOR_UNSPECIFIED || e > v1::ESTIMATOR_PSEUDO_INVERSE) {
      return absl::InvalidArgumentError(absl::StrCat("estimators: unknown value ", e));
    }
    wanted.insert(e);
  }
  auto want = [&](v1::Estimator e) { return wanted.empty() || wanted.count(e) > 0; };
  EstimatorSelection which;
  which.posterior_mean = want(v1::ESTIMATOR_POSTERIOR_MEAN);
  which.posterior_std = want(v1::ESTIMATOR_POSTERIOR_STD);
  which.map = want(v1::ESTIMATOR_MAP);
  which.wiener = want(v1::ESTIMATOR_WIENER);
  which.pseudo_inverse = want(v1::ESTIMATOR_PSEUDO_INVERSE);
  INVNET_ASSIGN_OR_RETURN(
      at::Tensor y, DecodeBatch(request.measurements(), model->measurement_dim(), "measurements",
                                limits_.tensors));
  INVNET_RETURN_IF_ERROR(GuardTorch("Estimate", [&]() -> absl::Status {
    at::NoGradGuard no_grad;
    INVNET_ASSIGN_OR_RETURN(Estimates e, model->references->Compute(y, which, stop));
    if (which.posterior_mean) EncodeTensor(e.posterior_mean, response->mutable_posterior_mean());
    if (which.posterior_std) EncodeTensor(e.posterior_std, response->mutable_posterior_std());
    if (which.map) {
      EncodeTensor(e.map.x, response->mutable_map());
      at::Tensor objective = e.map.objective.contiguous();
      response->mutable_map_objective()->Add(objective.data_ptr<double>(),
                                             objective.data_ptr<double>() + objective.numel());
      at::Tensor gradient_norm = e.map.gradient_norm.contiguous();
      response->mutable_map_gradient_norm()->Add(
          gradient_norm.data_ptr<double>(),
          gradient_norm.data_ptr<double>() + gradient_norm.numel());
    }
    if (which.wiener) EncodeTensor(e.wiener, response->mutable_wiener());
    if (which.pseudo_inverse) EncodeTensor(e.pseudo_inverse, response->mutable_pseudo_inverse());
    return absl::OkStatus();
  }));
  response->set_model(model->name);
  response->set_version(model->version);
  return absl::OkStatus();
}

absl::Status ReconstructionCore::DrawTestPairs(const v1::DrawTestPairsRequest& request,
                                               const std::function<bool()>& stop,
                                               v1::DrawTestPairsResponse* response) {
  INVNET_ASSIGN_OR_RETURN(auto model, Lookup(*models_, request.model(), request.version()));
  const int64_t width = model->signal_dim() + model->measurement_dim();
  if (request.count() < 1 || request.count() > 1000000) {
    return absl::InvalidArgumentError(
        absl::StrCat("count: ", request.count(), " must lie in [1, 1000000]"));
  }
  if (request.count() > limits_.tensors.max_elements / width) {
    return absl::ResourceExhaustedError(
        absl::StrCat("count: ", request.count(), " pairs exceed the message size limit"));
  }
  return GuardTorch("DrawTestPairs", [&]() -> absl::Status {
    at::NoGradGuard no_grad;
    // The test stream of the seed: never the draws of a training or validation seed.
    at::Generator gen =
        at::make_generator<at::CPUGeneratorImpl>(StreamSeed(request.seed(), SeedStream::kTest));
    const ProblemSpec& problem = model->record.problem;
    std::unique_ptr<EmpiricalDataset> holdout;
    const SignalSource* source = model->prior.get();
    if (source == nullptr) {
      // The samples the trainer held out for validation (SplitDataset), so the pairs were
      // never trained on.
      const std::string& name = problem.dataset->name;
      absl::StatusOr<at::Tensor> samples = datasets_->Load(name);
      if (!samples.ok()) {
        return absl::FailedPreconditionError(
            absl::StrCat("the dataset '", name,
                         "' this model was trained on is gone: ", samples.status().message()));
      }
      INVNET_RETURN_IF_ERROR(CheckDatasetUnchanged(*problem.dataset, *samples));
      INVNET_ASSIGN_OR_RETURN(auto split, SplitDataset(*samples, model->record.training));
      INVNET_ASSIGN_OR_RETURN(holdout, EmpiricalDataset::Create(split.second));
      source = holdout.get();
    }
    INVNET_ASSIGN_OR_RETURN(TestSet pairs,
                            DrawTestSetUnlessStopped(*source, *model->op, problem.noise_level,
                                                     request.count(), gen, stop));
    response->set_model(model->name);
    response->set_version(model->version);
    EncodeTensor(pairs.x, response->mutable_signals());
    EncodeTensor(pairs.y, response->mutable_measurements());
    return absl::OkStatus();
  });
}

}  // namespace invnet::server
