#include "server/reconstruction_core.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"

#include "absl/strings/str_cat.h"
#include "models/evaluation.h"
#include "models/losses.h"
#include "models/posterior_spread.h"
#include "models/seeds.h"
#include "models/torch_status.h"
#include "models/trainer.h"
#include "proto/base/status.h"
#include "proto/base/status_macros.h"
#include "server/names.h"
#include "server/spec_codec.h"

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

// Why a model has no exact references (Estimate's FAILED_PRECONDITION message).
std::string ReferencesUnavailable(const HostedModel& model) {
  return absl::StrCat("model '", model.name, "' version ", model.version,
                      model.record.problem.dataset.has_value()
                          ? " was trained on a dataset, not a Gaussian-mixture prior"
                          : " has noise level 0",
                      ": the exact posterior references are not defined for it");
}

// OK when `count` pairs of `model` are a request DrawTestPairs and Evaluate serve.
absl::Status CheckPairCount(int64_t count, const HostedModel& model, const TensorLimits& limits) {
  if (count < 1 || count > 1000000) {
    return absl::InvalidArgumentError(absl::StrCat("count: ", count, " must lie in [1, 1000000]"));
  }
  const int64_t width = model.signal_dim() + model.measurement_dim();
  if (count > limits.max_elements / width) {
    return absl::ResourceExhaustedError(
        absl::StrCat("count: ", count, " pairs exceed the message size limit"));
  }
  return absl::OkStatus();
}

// The problem as its proto says it (the same problem whether it came from a preset or was
// spelt out), and, for dataset problems, the samples and what decides the held-out split: two
// models with equal keys are scored on pairs neither trained on.
std::string ProblemKey(const HostedModel& model) {
  v1::Problem proto;
  EncodeProblem(model.record.problem, &proto);
  std::string key;
  google::protobuf::io::StringOutputStream stream(&key);
  google::protobuf::io::CodedOutputStream coded(&stream);
  coded.SetSerializationDeterministic(true);
  proto.SerializeToCodedStream(&coded);
  coded.Trim();
  if (model.record.problem.dataset.has_value()) {
    absl::StrAppend(&key, "|", model.record.problem.dataset->fingerprint, "|holdout ",
                    model.record.training.validation_size, " ",
                    static_cast<int>(model.record.training.holdout_split));
  }
  return key;
}

// The test stream of `seed` (never the draws of a training or validation seed): pairs from the
// model's prior, or from the part of its dataset the trainer held out (SplitDataset), so they
// were never trained on. Call under GuardTorch.
absl::StatusOr<TestSet> DrawPairs(const HostedModel& model, const DatasetStore& datasets,
                                  int64_t count, uint64_t seed, const std::function<bool()>& stop) {
  at::Generator gen =
      at::make_generator<at::CPUGeneratorImpl>(StreamSeed(seed, SeedStream::kTest));
  const ProblemSpec& problem = model.record.problem;
  std::unique_ptr<EmpiricalDataset> holdout;
  const SignalSource* source = model.prior.get();
  if (source == nullptr) {
    const std::string& name = problem.dataset->name;
    absl::StatusOr<at::Tensor> samples = datasets.Load(name);
    if (!samples.ok()) {
      return absl::FailedPreconditionError(
          absl::StrCat("the dataset '", name,
                       "' this model was trained on is gone: ", samples.status().message()));
    }
    INVNET_RETURN_IF_ERROR(CheckDatasetUnchanged(*problem.dataset, *samples));
    INVNET_ASSIGN_OR_RETURN(auto split, SplitDataset(*samples, model.record.training));
    INVNET_ASSIGN_OR_RETURN(holdout, EmpiricalDataset::Create(split.second));
    source = holdout.get();
  }
  return DrawTestSetUnlessStopped(*source, *model.op, problem.noise_level, count, gen, stop);
}

// Every field of `score` from `metrics` (NaN where a metric does not apply).
void EncodeScore(const EvaluationMetrics& metrics, v1::EstimatorScore* score) {
  score->set_mse(metrics.mse);
  score->set_mse_ratio_to_pm(metrics.mse_ratio_to_pm);
  score->set_rms_to_pm(metrics.rms_to_pm);
  score->set_rms_to_map(metrics.rms_to_map);
  score->set_forward_error(metrics.forward_error);
  score->set_converged_fraction(metrics.converged_fraction);
  score->set_mean_iterations(metrics.mean_iterations);
  score->set_mean_posterior_std(metrics.mean_posterior_std);
  score->set_std_ratio_mean(metrics.std_ratio_mean);
  score->set_std_ratio_median(metrics.std_ratio_median);
  score->set_std_ratio_q10(metrics.std_ratio_q10);
  score->set_std_ratio_q90(metrics.std_ratio_q90);
  score->set_std_undefined_fraction(metrics.std_undefined_fraction);
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
  at::Tensor out;
  switch (request.map()) {
    case v1::FORWARD_MAP_UNSPECIFIED:
    case v1::FORWARD_MAP_NETWORK: {
      INVNET_ASSIGN_OR_RETURN(out, model->network->Forward(x, stop));
      break;
    }
    case v1::FORWARD_MAP_OPERATOR:
    case v1::FORWARD_MAP_NORMAL_OPERATOR: {
      INVNET_ASSIGN_OR_RETURN(out, GuardTorchOr<at::Tensor>("Forward", [&]() -> at::Tensor {
                                at::NoGradGuard no_grad;
                                at::Tensor ax = model->op->Apply(x.to(at::kDouble));
                                if (request.map() == v1::FORWARD_MAP_NORMAL_OPERATOR) {
                                  ax = model->op->Adjoint(ax);
                                }
                                return ax.to(at::kFloat);
                              }));
      break;
    }
    default:
      return absl::InvalidArgumentError(absl::StrCat("map: unknown value ", request.map()));
  }
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
    return absl::FailedPreconditionError(ReferencesUnavailable(*model));
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
  INVNET_RETURN_IF_ERROR(CheckPairCount(request.count(), *model, limits_.tensors));
  return GuardTorch("DrawTestPairs", [&]() -> absl::Status {
    at::NoGradGuard no_grad;
    INVNET_ASSIGN_OR_RETURN(TestSet pairs,
                            DrawPairs(*model, *datasets_, request.count(), request.seed(), stop));
    response->set_model(model->name);
    response->set_version(model->version);
    EncodeTensor(pairs.x, response->mutable_signals());
    EncodeTensor(pairs.y, response->mutable_measurements());
    return absl::OkStatus();
  });
}

absl::Status ReconstructionCore::Evaluate(const v1::EvaluateRequest& request,
                                          const std::function<bool()>& stop,
                                          v1::EvaluateResponse* response) {
  constexpr int kMaxModels = 64;
  if (request.models_size() < 1 || request.models_size() > kMaxModels) {
    return absl::InvalidArgumentError(absl::StrCat("models: ", request.models_size(),
                                                   " models; between 1 and ", kMaxModels));
  }
  std::vector<std::shared_ptr<const HostedModel>> models;
  for (int i = 0; i < request.models_size(); ++i) {
    const v1::ModelReference& ref = request.models(i);
    absl::StatusOr<std::shared_ptr<const HostedModel>> model =
        Lookup(*models_, ref.model(), ref.version());
    if (!model.ok()) return Annotate(model.status(), absl::StrCat("models[", i, "]"));
    if (i > 0 && ProblemKey(**model) != ProblemKey(*models.front())) {
      return absl::InvalidArgumentError(absl::StrCat(
          "models[", i, "]: '", (*model)->name, "' version ", (*model)->version,
          " was trained on another problem than models[0] ('", models.front()->name,
          "'): models are compared on one problem's pairs"));
    }
    models.push_back(*std::move(model));
  }
  const HostedModel& first = *models.front();
  INVNET_RETURN_IF_ERROR(CheckPairCount(request.count(), first, limits_.tensors));
  INVNET_ASSIGN_OR_RETURN(InverseOptions options, DecodeSolver(request.solver()));
  options.should_stop = stop;
  return GuardTorch("Evaluate", [&]() -> absl::Status {
    at::NoGradGuard no_grad;
    INVNET_ASSIGN_OR_RETURN(TestSet test,
                            DrawPairs(first, *datasets_, request.count(), request.seed(), stop));
    response->set_count(request.count());
    response->set_seed(request.seed());
    if (first.references != nullptr) {
      const EstimatorSelection all{/*posterior_mean=*/true, /*posterior_std=*/true, /*map=*/true,
                                   /*wiener=*/true, /*pseudo_inverse=*/true};
      INVNET_ASSIGN_OR_RETURN(Estimates exact, first.references->Compute(test.y, all, stop));
      test.pm = exact.posterior_mean;
      test.map = exact.map.x;
      test.posterior_std = exact.posterior_std;
      const std::pair<const char*, const at::Tensor*> references[] = {
          {"posterior_mean", &exact.posterior_mean},
          {"map", &exact.map.x},
          {"wiener", &exact.wiener},
          {"pseudo_inverse", &exact.pseudo_inverse}};
      for (const auto& [name, estimate] : references) {
        if (!estimate->defined()) continue;
        EvaluationMetrics metrics = EvaluateEstimate(*estimate, test);
        if (estimate == &exact.posterior_mean) {
          metrics.mean_posterior_std = exact.posterior_std.mean().item<double>();
        }
        v1::EstimatorScore* score = response->add_references();
        score->set_estimator(name);
        EncodeScore(metrics, score);
      }
    } else {
      response->set_references_unavailable(ReferencesUnavailable(first));
    }
    for (const auto& model : models) {
      v1::EstimatorScore* score = response->add_models();
      score->set_model(model->name);
      score->set_version(model->version);
      const PosteriorSpreadSetup setup = SpreadSetupOf(*model);
      std::optional<PosteriorSpreadSetup> spread;
      if (request.posterior_std()) {
        absl::StatusOr<PosteriorSpreadMethod> method = PosteriorSpreadMethodFor(setup, *model->op);
        if (method.ok()) {
          spread = setup;
          score->set_posterior_std_method(std::string(PosteriorSpreadMethodName(*method)));
        } else if (method.status().code() == absl::StatusCode::kFailedPrecondition ||
                   method.status().code() == absl::StatusCode::kUnimplemented) {
          score->set_posterior_std_unavailable(std::string(method.status().message()));
        } else {
          return method.status();
        }
      }
      INVNET_ASSIGN_OR_RETURN(
          EvaluationMetrics metrics,
          EvaluateNetwork(*model->network, *model->op, model->target_space(), test, options,
                          spread.has_value() ? &*spread : nullptr));
      EncodeScore(metrics, score);
    }
    return absl::OkStatus();
  });
}

}  // namespace invnet::server
