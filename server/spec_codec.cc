#include "server/spec_codec.h"

#include <ATen/ATen.h>

#include "absl/strings/str_cat.h"
#include "models/presets.h"
#include "proto/base/status_macros.h"
#include "server/names.h"

namespace invnet::server {
namespace {

v1::Activation EncodeActivation(Activation a) {
  switch (a) {
    case Activation::kElu:
      return v1::ACTIVATION_ELU;
    case Activation::kTanh:
      return v1::ACTIVATION_TANH;
    case Activation::kSoftplus:
      return v1::ACTIVATION_SOFTPLUS;
    case Activation::kLipSwish:
      return v1::ACTIVATION_LIPSWISH;
  }
  return v1::ACTIVATION_UNSPECIFIED;
}

absl::StatusOr<Activation> DecodeActivation(v1::Activation a) {
  switch (a) {
    case v1::ACTIVATION_UNSPECIFIED:
    case v1::ACTIVATION_ELU:
      return Activation::kElu;
    case v1::ACTIVATION_TANH:
      return Activation::kTanh;
    case v1::ACTIVATION_SOFTPLUS:
      return Activation::kSoftplus;
    case v1::ACTIVATION_LIPSWISH:
      return Activation::kLipSwish;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("architecture.activation: unknown value ", static_cast<int>(a)));
  }
}

v1::LipschitzSplit EncodeLipschitzSplit(LipschitzSplit split) {
  switch (split) {
    case LipschitzSplit::kGeometric:
      return v1::LIPSCHITZ_SPLIT_GEOMETRIC;
    case LipschitzSplit::kLastLayer:
      return v1::LIPSCHITZ_SPLIT_LAST_LAYER;
    case LipschitzSplit::kEveryLayer:
      return v1::LIPSCHITZ_SPLIT_EVERY_LAYER;
  }
  return v1::LIPSCHITZ_SPLIT_UNSPECIFIED;
}

absl::StatusOr<LipschitzSplit> DecodeLipschitzSplit(v1::LipschitzSplit split) {
  switch (split) {
    case v1::LIPSCHITZ_SPLIT_UNSPECIFIED:
    case v1::LIPSCHITZ_SPLIT_GEOMETRIC:
      return LipschitzSplit::kGeometric;
    case v1::LIPSCHITZ_SPLIT_LAST_LAYER:
      return LipschitzSplit::kLastLayer;
    case v1::LIPSCHITZ_SPLIT_EVERY_LAYER:
      return LipschitzSplit::kEveryLayer;
    default:
      return absl::InvalidArgumentError(absl::StrCat(
          "architecture.lipschitz_split: unknown value ", static_cast<int>(split)));
  }
}

v1::Loss EncodeLoss(LossKind k) {
  switch (k) {
    case LossKind::kApproximation:
      return v1::LOSS_APPROXIMATION;
    case LossKind::kReconstruction:
      return v1::LOSS_RECONSTRUCTION;
    case LossKind::kLogDet:
      return v1::LOSS_LOG_DET;
    case LossKind::kDivergence:
      return v1::LOSS_DIVERGENCE;
  }
  return v1::LOSS_UNSPECIFIED;
}

absl::StatusOr<LossKind> DecodeLoss(v1::Loss loss) {
  switch (loss) {
    case v1::LOSS_APPROXIMATION:
      return LossKind::kApproximation;
    case v1::LOSS_RECONSTRUCTION:
      return LossKind::kReconstruction;
    case v1::LOSS_LOG_DET:
      return LossKind::kLogDet;
    case v1::LOSS_DIVERGENCE:
      return LossKind::kDivergence;
    case v1::LOSS_UNSPECIFIED:
      return absl::InvalidArgumentError(
          "training.loss: required (approximation, reconstruction, log_det or divergence)");
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("training.loss: unknown value ", static_cast<int>(loss)));
  }
}

v1::LogDetEstimator EncodeLogDetEstimator(LogDetEstimator e) {
  return e == LogDetEstimator::kRussianRoulette ? v1::LOG_DET_ESTIMATOR_RUSSIAN_ROULETTE
                                                 : v1::LOG_DET_ESTIMATOR_TRUNCATED_SERIES;
}

absl::StatusOr<LogDetEstimator> DecodeLogDetEstimator(v1::LogDetEstimator e) {
  switch (e) {
    case v1::LOG_DET_ESTIMATOR_UNSPECIFIED:
    case v1::LOG_DET_ESTIMATOR_RUSSIAN_ROULETTE:
      return LogDetEstimator::kRussianRoulette;
    case v1::LOG_DET_ESTIMATOR_TRUNCATED_SERIES:
      return LogDetEstimator::kTruncatedSeries;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("training.log_det_estimator: unknown value ", static_cast<int>(e)));
  }
}

absl::StatusOr<at::Tensor> DecodeDouble(const v1::Tensor& proto, int rank, absl::string_view field,
                                        const TensorLimits& limits) {
  INVNET_ASSIGN_OR_RETURN(at::Tensor t, DecodeTensor(proto, rank, field, limits));
  return t.to(at::kDouble);
}

absl::StatusOr<OperatorSpec> DecodeOperator(const v1::Operator& proto,
                                            const TensorLimits& limits) {
  OperatorSpec spec;
  switch (proto.kind_case()) {
    case v1::Operator::kIdentity:
      spec.kind = OperatorKind::kIdentity;
      spec.dim = proto.identity().dim();
      return spec;
    case v1::Operator::kDense: {
      spec.kind = OperatorKind::kDense;
      INVNET_ASSIGN_OR_RETURN(spec.matrix, DecodeDouble(proto.dense().matrix(), 2,
                                                        "operator.dense.matrix", limits));
      spec.dim = spec.matrix.size(1);
      return spec;
    }
    case v1::Operator::kConvolution:
      spec.kind = OperatorKind::kConvolution;
      spec.dim = proto.convolution().dim();
      spec.kernel.assign(proto.convolution().kernel().begin(), proto.convolution().kernel().end());
      switch (proto.convolution().boundary()) {
        case v1::BOUNDARY_UNSPECIFIED:
        case v1::BOUNDARY_PERIODIC:
          spec.boundary = Boundary::kPeriodic;
          break;
        case v1::BOUNDARY_ZERO:
          spec.boundary = Boundary::kZero;
          break;
        default:
          return absl::InvalidArgumentError("operator.convolution.boundary: unknown value");
      }
      return spec;
    case v1::Operator::KIND_NOT_SET:
      break;
  }
  return absl::InvalidArgumentError(
      "problem.operator: required (identity, dense or convolution)");
}

void EncodeOperator(const OperatorSpec& spec, v1::Operator* proto) {
  switch (spec.kind) {
    case OperatorKind::kIdentity:
      proto->mutable_identity()->set_dim(spec.dim);
      return;
    case OperatorKind::kDense:
      EncodeTensor(spec.matrix, proto->mutable_dense()->mutable_matrix());
      return;
    case OperatorKind::kConvolution: {
      v1::ConvolutionOperator* conv = proto->mutable_convolution();
      conv->set_dim(spec.dim);
      for (double k : spec.kernel) conv->add_kernel(k);
      conv->set_boundary(spec.boundary == Boundary::kPeriodic ? v1::BOUNDARY_PERIODIC
                                                              : v1::BOUNDARY_ZERO);
      return;
    }
  }
}

// n, the signal dimension, of a decoded operator spec (validated later).
int64_t SignalDim(const OperatorSpec& spec) {
  return spec.kind == OperatorKind::kDense ? spec.matrix.size(1) : spec.dim;
}

// A network takes at most kMaxIResNetDim inputs, fewer than an operator may have: refused
// naming the field that set n (architecture.dim is the server's, never the client's).
absl::Status CheckTrainableDim(const OperatorSpec& spec) {
  const int64_t n = SignalDim(spec);
  if (n <= kMaxIResNetDim) return absl::OkStatus();
  const char* field = spec.kind == OperatorKind::kDense ? "problem.operator.dense.matrix"
                      : spec.kind == OperatorKind::kConvolution
                          ? "problem.operator.convolution.dim"
                          : "problem.operator.identity.dim";
  return absl::InvalidArgumentError(absl::StrCat(
      field, ": signal dimension n = ", n,
      spec.kind == OperatorKind::kDense ? " (the matrix's columns)" : "", " exceeds ",
      kMaxIResNetDim, ", the most a trained network takes"));
}

}  // namespace

absl::StatusOr<ProblemSpec> DecodeProblem(const v1::Problem& proto, const TensorLimits& limits) {
  ProblemSpec spec;
  INVNET_ASSIGN_OR_RETURN(spec.op, DecodeOperator(proto.operator_(), limits));
  spec.noise_level = proto.noise_level();
  switch (proto.signals_case()) {
    case v1::Problem::kPrior: {
      const v1::GaussianMixture& prior = proto.prior();
      GaussianMixtureSpec gmm;
      gmm.weights = at::tensor(std::vector<double>(prior.weights().begin(), prior.weights().end()),
                               at::kDouble);
      INVNET_ASSIGN_OR_RETURN(gmm.means, DecodeDouble(prior.means(), 2, "prior.means", limits));
      INVNET_ASSIGN_OR_RETURN(gmm.covariances,
                              DecodeDouble(prior.covariances(), 3, "prior.covariances", limits));
      spec.prior = std::move(gmm);
      break;
    }
    case v1::Problem::kDataset:
      spec.dataset = DatasetRef{proto.dataset(), 0, SignalDim(spec.op)};
      break;
    case v1::Problem::SIGNALS_NOT_SET:
      return absl::InvalidArgumentError(
          "problem.signals: give a prior (Gaussian mixture) or the name of an uploaded dataset");
  }
  return spec;
}

void EncodeProblem(const ProblemSpec& spec, v1::Problem* proto) {
  EncodeOperator(spec.op, proto->mutable_operator_());
  proto->set_noise_level(spec.noise_level);
  if (spec.prior.has_value()) {
    v1::GaussianMixture* prior = proto->mutable_prior();
    at::Tensor w = spec.prior->weights.to(at::kDouble).contiguous();
    for (int64_t i = 0; i < w.numel(); ++i) prior->add_weights(w.data_ptr<double>()[i]);
    EncodeTensor(spec.prior->means, prior->mutable_means());
    EncodeTensor(spec.prior->covariances, prior->mutable_covariances());
  } else if (spec.dataset.has_value()) {
    proto->set_dataset(spec.dataset->name);
  }
}

void EncodeArchitecture(const IResNetConfig& c, v1::Architecture* proto) {
  proto->set_dim(c.dim);
  proto->set_num_blocks(c.num_blocks);
  proto->set_hidden_width(c.hidden_width);
  proto->set_layers_per_block(c.layers_per_block);
  proto->set_activation(EncodeActivation(c.activation));
  proto->set_lipschitz_coeff(c.lipschitz_coeff);
  proto->set_seed(c.seed);
  proto->set_lipschitz_split(EncodeLipschitzSplit(c.lipschitz_split));
}

void EncodeTraining(const TrainingSpec& t, v1::Training* proto) {
  proto->set_loss(EncodeLoss(t.loss));
  proto->set_loss_weight(t.loss_weight);
  proto->set_target_space(t.target_space == TargetSpace::kMeasurement
                              ? v1::TARGET_SPACE_MEASUREMENT
                              : v1::TARGET_SPACE_NORMAL);
  proto->set_steps(t.steps);
  proto->set_batch_size(t.batch_size);
  proto->set_learning_rate(t.learning_rate);
  proto->set_cosine_decay(t.cosine_decay);
  proto->set_warmup_steps(t.warmup_steps);
  proto->set_grad_clip_norm(t.grad_clip_norm);
  proto->set_seed(t.seed);
  proto->set_validation_every(t.validation_every);
  proto->set_validation_size(t.validation_size);
  proto->set_exact_jacobian_max_dim(t.exact_jacobian_max_dim);
  proto->set_hutchinson_probes(t.hutchinson_probes);
  proto->set_log_det_series_terms(t.log_det_series_terms);
  proto->set_log_det_estimator(EncodeLogDetEstimator(t.log_det_estimator));
}

absl::StatusOr<ResolvedTraining> ResolveTrainRequest(const v1::TrainRequest& request,
                                                     const TensorLimits& limits) {
  ResolvedTraining r;
  r.model_name = request.model_name();
  INVNET_ASSIGN_OR_RETURN(LossKind loss, DecodeLoss(request.training().loss()));
  bool default_target_space = true;
  if (!request.preset().empty()) {
    INVNET_RETURN_IF_ERROR(ValidateName(request.preset(), "preset"));
    absl::StatusOr<Preset> preset = GetPreset(request.preset(), loss);
    if (!preset.ok()) return absl::InvalidArgumentError(preset.status().message());
    r.preset = preset->name;
    r.problem = preset->problem;
    r.architecture = preset->architecture;
    r.training = preset->training;
  } else if (!request.has_problem()) {
    return absl::InvalidArgumentError("problem: required unless a preset is named");
  }
  if (request.has_problem()) {
    INVNET_ASSIGN_OR_RETURN(r.problem, DecodeProblem(request.problem(), limits));
    INVNET_RETURN_IF_ERROR(CheckTrainableDim(r.problem.op));
    r.problem.preset.clear();
    r.preset.clear();
  }
  r.training.loss = loss;

  const v1::Architecture& a = request.architecture();
  if (a.has_num_blocks()) r.architecture.num_blocks = a.num_blocks();
  if (a.has_hidden_width()) r.architecture.hidden_width = a.hidden_width();
  if (a.has_layers_per_block()) r.architecture.layers_per_block = a.layers_per_block();
  if (a.activation() != v1::ACTIVATION_UNSPECIFIED) {
    INVNET_ASSIGN_OR_RETURN(r.architecture.activation, DecodeActivation(a.activation()));
  }
  if (a.has_lipschitz_coeff()) r.architecture.lipschitz_coeff = a.lipschitz_coeff();
  if (a.lipschitz_split() != v1::LIPSCHITZ_SPLIT_UNSPECIFIED) {
    INVNET_ASSIGN_OR_RETURN(r.architecture.lipschitz_split,
                            DecodeLipschitzSplit(a.lipschitz_split()));
  }
  if (a.has_seed()) r.architecture.seed = a.seed();
  r.architecture.dim = SignalDim(r.problem.op);
  // A problem of the request's own trains as long as its dimension asks (a preset keeps its
  // schedule); training.steps overrides both below.
  if (request.preset().empty()) r.training.steps = DefaultTrainingSteps(r.architecture.dim);

  const v1::Training& t = request.training();
  if (t.has_loss_weight()) {
    if (!(t.loss_weight() >= 0)) {
      return absl::InvalidArgumentError(
          absl::StrCat("training.loss_weight: ", FormatExact(t.loss_weight()), " must be >= 0"));
    }
    r.training.loss_weight = t.loss_weight();
  } else {
    r.training.loss_weight = -1.0;  // delta^2, resolved by the trainer
  }
  switch (t.target_space()) {
    case v1::TARGET_SPACE_UNSPECIFIED:
      break;
    case v1::TARGET_SPACE_MEASUREMENT:
      r.training.target_space = TargetSpace::kMeasurement;
      default_target_space = false;
      break;
    case v1::TARGET_SPACE_NORMAL:
      r.training.target_space = TargetSpace::kNormal;
      default_target_space = false;
      break;
    default:
      return absl::InvalidArgumentError("training.target_space: unknown value");
  }
  if (default_target_space) {
    const bool square = r.problem.op.kind != OperatorKind::kDense ||
                        r.problem.op.matrix.size(0) == r.problem.op.matrix.size(1);
    r.training.target_space = DefaultTargetSpace(loss, square);
    r.target_space_reason = loss == LossKind::kDivergence ? "default for the divergence loss"
                            : square ? "default for a square operator"
                                     : "default for a non-square operator";
  }
  if (t.has_steps()) r.training.steps = t.steps();
  if (t.has_batch_size()) r.training.batch_size = t.batch_size();
  if (t.has_learning_rate()) r.training.learning_rate = t.learning_rate();
  if (t.has_cosine_decay()) r.training.cosine_decay = t.cosine_decay();
  if (t.has_warmup_steps()) r.training.warmup_steps = t.warmup_steps();
  if (t.has_grad_clip_norm()) r.training.grad_clip_norm = t.grad_clip_norm();
  if (t.has_seed()) r.training.seed = t.seed();
  if (t.has_validation_every()) r.training.validation_every = t.validation_every();
  if (t.has_validation_size()) r.training.validation_size = t.validation_size();
  if (t.has_exact_jacobian_max_dim()) {
    r.training.exact_jacobian_max_dim = t.exact_jacobian_max_dim();
  }
  if (t.has_hutchinson_probes()) r.training.hutchinson_probes = t.hutchinson_probes();
  if (t.has_log_det_series_terms()) r.training.log_det_series_terms = t.log_det_series_terms();
  if (t.log_det_estimator() != v1::LOG_DET_ESTIMATOR_UNSPECIFIED) {
    INVNET_ASSIGN_OR_RETURN(r.training.log_det_estimator,
                            DecodeLogDetEstimator(t.log_det_estimator()));
  }
  return r;
}

}  // namespace invnet::server
