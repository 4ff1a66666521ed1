#include "models/checkpoint.h"

#include <cmath>
#include <unordered_map>

#include <ATen/ATen.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "models/archive.h"
#include "models/memory_estimate.h"
#include "models/torch_status.h"
#include "proto/base/file_io.h"
#include "proto/base/status.h"
#include "proto/base/status_macros.h"

namespace invnet {
namespace {

constexpr char kKind[] = "invnet.checkpoint";
constexpr char kStatePrefix[] = "state.";
constexpr char kMetricPrefix[] = "metrics.";
constexpr char kCurvePrefix[] = "curves.";
constexpr char kLabelPrefix[] = "labels.";

void PutArchitecture(const IResNetConfig& a, ArchiveWriter& w) {
  w.PutInt("architecture.dim", a.dim);
  w.PutInt("architecture.num_blocks", a.num_blocks);
  w.PutInt("architecture.hidden_width", a.hidden_width);
  w.PutInt("architecture.layers_per_block", a.layers_per_block);
  w.PutString("architecture.activation", ActivationName(a.activation));
  w.PutDouble("architecture.lipschitz_coeff", a.lipschitz_coeff);
  w.PutString("architecture.lipschitz_split", LipschitzSplitName(a.lipschitz_split));
  w.PutInt("architecture.seed", static_cast<int64_t>(a.seed));
}

absl::StatusOr<IResNetConfig> GetArchitecture(const ArchiveReader& r) {
  IResNetConfig a;
  INVNET_ASSIGN_OR_RETURN(a.dim, r.GetInt("architecture.dim"));
  INVNET_ASSIGN_OR_RETURN(a.num_blocks, r.GetInt("architecture.num_blocks"));
  INVNET_ASSIGN_OR_RETURN(a.hidden_width, r.GetInt("architecture.hidden_width"));
  INVNET_ASSIGN_OR_RETURN(a.layers_per_block, r.GetInt("architecture.layers_per_block"));
  INVNET_ASSIGN_OR_RETURN(std::string activation, r.GetString("architecture.activation"));
  INVNET_ASSIGN_OR_RETURN(a.activation, ParseActivation(activation));
  INVNET_ASSIGN_OR_RETURN(a.lipschitz_coeff, r.GetDouble("architecture.lipschitz_coeff"));
  // Checkpoints written before the split capped every layer at c.
  a.lipschitz_split = LipschitzSplit::kEveryLayer;
  if (r.Has("architecture.lipschitz_split")) {
    INVNET_ASSIGN_OR_RETURN(std::string split, r.GetString("architecture.lipschitz_split"));
    INVNET_ASSIGN_OR_RETURN(a.lipschitz_split, ParseLipschitzSplit(split));
  }
  INVNET_ASSIGN_OR_RETURN(int64_t seed, r.GetInt("architecture.seed"));
  a.seed = static_cast<uint64_t>(seed);
  INVNET_RETURN_IF_ERROR(ValidateIResNetConfig(a));
  return a;
}

void PutProblem(const ProblemSpec& p, ArchiveWriter& w) {
  w.PutString("problem.preset", p.preset);
  w.PutString("problem.operator.kind", OperatorKindName(p.op.kind));
  w.PutInt("problem.operator.dim", p.op.dim);
  if (p.op.kind == OperatorKind::kDense) w.PutTensor("problem.operator.matrix", p.op.matrix);
  if (p.op.kind == OperatorKind::kConvolution) {
    w.PutDoubles("problem.operator.kernel", p.op.kernel);
    w.PutString("problem.operator.boundary", BoundaryName(p.op.boundary));
  }
  w.PutDouble("problem.noise_level", p.noise_level);
  if (p.prior.has_value()) {
    w.PutTensor("problem.prior.weights", p.prior->weights);
    w.PutTensor("problem.prior.means", p.prior->means);
    w.PutTensor("problem.prior.covariances", p.prior->covariances);
  }
  if (p.dataset.has_value()) {
    w.PutString("problem.dataset.name", p.dataset->name);
    w.PutInt("problem.dataset.num_samples", p.dataset->num_samples);
    w.PutInt("problem.dataset.dim", p.dataset->dim);
    if (!p.dataset->fingerprint.empty()) {
      w.PutString("problem.dataset.fingerprint", p.dataset->fingerprint);
    }
  }
}

absl::StatusOr<ProblemSpec> GetProblem(const ArchiveReader& r) {
  ProblemSpec p;
  INVNET_ASSIGN_OR_RETURN(p.preset, r.GetString("problem.preset"));
  INVNET_ASSIGN_OR_RETURN(std::string kind, r.GetString("problem.operator.kind"));
  INVNET_ASSIGN_OR_RETURN(p.op.kind, ParseOperatorKind(kind));
  INVNET_ASSIGN_OR_RETURN(p.op.dim, r.GetInt("problem.operator.dim"));
  if (p.op.kind == OperatorKind::kDense) {
    INVNET_ASSIGN_OR_RETURN(p.op.matrix, r.GetTensor("problem.operator.matrix"));
  }
  if (p.op.kind == OperatorKind::kConvolution) {
    INVNET_ASSIGN_OR_RETURN(p.op.kernel, r.GetDoubles("problem.operator.kernel"));
    INVNET_ASSIGN_OR_RETURN(std::string boundary, r.GetString("problem.operator.boundary"));
    INVNET_ASSIGN_OR_RETURN(p.op.boundary, ParseBoundary(boundary));
  }
  INVNET_RETURN_IF_ERROR(LinearOperator::Create(p.op).status());
  INVNET_ASSIGN_OR_RETURN(p.noise_level, r.GetDouble("problem.noise_level"));
  if (!(p.noise_level >= 0.0) || !std::isfinite(p.noise_level)) {
    return absl::InvalidArgumentError("problem.noise_level: must be finite and >= 0");
  }
  if (r.Has("problem.prior.weights")) {
    GaussianMixtureSpec prior;
    INVNET_ASSIGN_OR_RETURN(prior.weights, r.GetTensor("problem.prior.weights"));
    INVNET_ASSIGN_OR_RETURN(prior.means, r.GetTensor("problem.prior.means"));
    INVNET_ASSIGN_OR_RETURN(prior.covariances, r.GetTensor("problem.prior.covariances"));
    p.prior = std::move(prior);
  }
  if (r.Has("problem.dataset.name")) {
    DatasetRef dataset;
    INVNET_ASSIGN_OR_RETURN(dataset.name, r.GetString("problem.dataset.name"));
    INVNET_ASSIGN_OR_RETURN(dataset.num_samples, r.GetInt("problem.dataset.num_samples"));
    INVNET_ASSIGN_OR_RETURN(dataset.dim, r.GetInt("problem.dataset.dim"));
    // Absent from checkpoints written before datasets were fingerprinted.
    if (r.Has("problem.dataset.fingerprint")) {
      INVNET_ASSIGN_OR_RETURN(dataset.fingerprint, r.GetString("problem.dataset.fingerprint"));
    }
    p.dataset = std::move(dataset);
  }
  return p;
}

void PutTraining(const TrainingSpec& t, ArchiveWriter& w) {
  w.PutString("training.loss", LossKindName(t.loss));
  w.PutDouble("training.loss_weight", t.loss_weight);
  w.PutString("training.target_space", TargetSpaceName(t.target_space));
  w.PutInt("training.steps", t.steps);
  w.PutInt("training.batch_size", t.batch_size);
  w.PutDouble("training.learning_rate", t.learning_rate);
  w.PutInt("training.cosine_decay", t.cosine_decay ? 1 : 0);
  w.PutInt("training.warmup_steps", t.warmup_steps);
  w.PutDouble("training.grad_clip_norm", t.grad_clip_norm);
  w.PutInt("training.seed", static_cast<int64_t>(t.seed));
  w.PutInt("training.validation_every", t.validation_every);
  w.PutInt("training.validation_size", t.validation_size);
  w.PutInt("training.holdout_split",
           t.holdout_split == HoldoutSplit::kSeededPermutation ? 1 : 0);
  w.PutInt("training.exact_jacobian_max_dim", t.exact_jacobian_max_dim);
  w.PutInt("training.hutchinson_probes", t.hutchinson_probes);
  w.PutString("training.log_det_estimator", LogDetEstimatorName(t.log_det_estimator));
  w.PutInt("training.log_det_series_terms", t.log_det_series_terms);
  w.PutDouble("training.solver_tolerance", t.solver_tolerance);
  w.PutInt("training.solver_max_iterations", t.solver_max_iterations);
}

absl::StatusOr<TrainingSpec> GetTraining(const ArchiveReader& r) {
  TrainingSpec t;
  INVNET_ASSIGN_OR_RETURN(std::string loss, r.GetString("training.loss"));
  INVNET_ASSIGN_OR_RETURN(t.loss, ParseLossKind(loss));
  INVNET_ASSIGN_OR_RETURN(t.loss_weight, r.GetDouble("training.loss_weight"));
  INVNET_ASSIGN_OR_RETURN(std::string space, r.GetString("training.target_space"));
  INVNET_ASSIGN_OR_RETURN(t.target_space, ParseTargetSpace(space));
  INVNET_ASSIGN_OR_RETURN(t.steps, r.GetInt("training.steps"));
  INVNET_ASSIGN_OR_RETURN(t.batch_size, r.GetInt("training.batch_size"));
  INVNET_ASSIGN_OR_RETURN(t.learning_rate, r.GetDouble("training.learning_rate"));
  // Added after the first checkpoints were written; absent means the default schedule.
  if (r.Has("training.cosine_decay")) {
    INVNET_ASSIGN_OR_RETURN(int64_t cosine, r.GetInt("training.cosine_decay"));
    t.cosine_decay = cosine != 0;
  }
  INVNET_ASSIGN_OR_RETURN(t.warmup_steps, r.GetInt("training.warmup_steps"));
  INVNET_ASSIGN_OR_RETURN(t.grad_clip_norm, r.GetDouble("training.grad_clip_norm"));
  INVNET_ASSIGN_OR_RETURN(int64_t seed, r.GetInt("training.seed"));
  t.seed = static_cast<uint64_t>(seed);
  INVNET_ASSIGN_OR_RETURN(t.validation_every, r.GetInt("training.validation_every"));
  INVNET_ASSIGN_OR_RETURN(t.validation_size, r.GetInt("training.validation_size"));
  // Checkpoints written before issue 12 held out the dataset's tail.
  t.holdout_split = HoldoutSplit::kTail;
  if (r.Has("training.holdout_split")) {
    INVNET_ASSIGN_OR_RETURN(int64_t split, r.GetInt("training.holdout_split"));
    if (split != 0 && split != 1) {
      return absl::InvalidArgumentError("training.holdout_split: must be 0 (tail) or 1");
    }
    if (split == 1) t.holdout_split = HoldoutSplit::kSeededPermutation;
  }
  INVNET_ASSIGN_OR_RETURN(t.exact_jacobian_max_dim, r.GetInt("training.exact_jacobian_max_dim"));
  INVNET_ASSIGN_OR_RETURN(t.hutchinson_probes, r.GetInt("training.hutchinson_probes"));
  // Added with the Russian roulette; checkpoints written before it trained with the truncated
  // series above exact_jacobian_max_dim.
  t.log_det_estimator = LogDetEstimator::kTruncatedSeries;
  if (r.Has("training.log_det_estimator")) {
    INVNET_ASSIGN_OR_RETURN(std::string estimator, r.GetString("training.log_det_estimator"));
    INVNET_ASSIGN_OR_RETURN(t.log_det_estimator, ParseLogDetEstimator(estimator));
  }
  INVNET_ASSIGN_OR_RETURN(t.log_det_series_terms, r.GetInt("training.log_det_series_terms"));
  INVNET_ASSIGN_OR_RETURN(t.solver_tolerance, r.GetDouble("training.solver_tolerance"));
  INVNET_ASSIGN_OR_RETURN(t.solver_max_iterations, r.GetInt("training.solver_max_iterations"));
  return t;
}

void PutCertificate(const LipschitzCertificate& c, ArchiveWriter& w) {
  w.PutDoubles("certificate.block_bounds", c.block_bounds);
  std::vector<double> flat;
  for (const auto& block : c.layer_sigmas) flat.insert(flat.end(), block.begin(), block.end());
  w.PutDoubles("certificate.layer_sigmas", flat);
}

absl::StatusOr<LipschitzCertificate> GetCertificate(const ArchiveReader& r,
                                                    const IResNetConfig& a) {
  LipschitzCertificate c;
  INVNET_ASSIGN_OR_RETURN(c.block_bounds, r.GetDoubles("certificate.block_bounds"));
  INVNET_ASSIGN_OR_RETURN(std::vector<double> flat, r.GetDoubles("certificate.layer_sigmas"));
  if (static_cast<int64_t>(c.block_bounds.size()) != a.num_blocks ||
      static_cast<int64_t>(flat.size()) != a.num_blocks * a.layers_per_block) {
    return absl::InvalidArgumentError("certificate: sizes do not match the architecture");
  }
  c.lower_lipschitz = 1.0;
  c.upper_lipschitz = 1.0;
  for (int64_t k = 0; k < a.num_blocks; ++k) {
    c.layer_sigmas.emplace_back(flat.begin() + k * a.layers_per_block,
                                flat.begin() + (k + 1) * a.layers_per_block);
    c.max_block_bound = std::max(c.max_block_bound, c.block_bounds[k]);
    c.lower_lipschitz *= std::max(0.0, 1.0 - c.block_bounds[k]);
    c.upper_lipschitz *= 1.0 + c.block_bounds[k];
  }
  return c;
}

absl::StatusOr<Checkpoint> DecodeCheckpoint(const ArchiveReader& r) {
  Checkpoint ck;
  INVNET_ASSIGN_OR_RETURN(ck.architecture, GetArchitecture(r));
  INVNET_ASSIGN_OR_RETURN(std::string dtype, r.GetString("dtype"));
  if (dtype == "float32") {
    ck.dtype = at::kFloat;
  } else if (dtype == "float64") {
    ck.dtype = at::kDouble;
  } else {
    return absl::InvalidArgumentError(absl::StrCat("dtype: unknown '", dtype, "'"));
  }
  INVNET_ASSIGN_OR_RETURN(ck.problem, GetProblem(r));
  INVNET_ASSIGN_OR_RETURN(ck.training, GetTraining(r));
  for (const std::string& key : r.KeysWithPrefix(kMetricPrefix)) {
    INVNET_ASSIGN_OR_RETURN(ck.metrics[key.substr(sizeof(kMetricPrefix) - 1)], r.GetDouble(key));
  }
  for (const std::string& key : r.KeysWithPrefix(kCurvePrefix)) {
    INVNET_ASSIGN_OR_RETURN(ck.curves[key.substr(sizeof(kCurvePrefix) - 1)], r.GetDoubles(key));
  }
  for (const std::string& key : r.KeysWithPrefix(kLabelPrefix)) {
    INVNET_ASSIGN_OR_RETURN(ck.labels[key.substr(sizeof(kLabelPrefix) - 1)], r.GetString(key));
  }
  INVNET_ASSIGN_OR_RETURN(ck.certificate, GetCertificate(r, ck.architecture));
  for (const std::string& key : r.KeysWithPrefix(kStatePrefix)) {
    INVNET_ASSIGN_OR_RETURN(at::Tensor t, r.GetTensor(key));
    ck.state.emplace_back(key.substr(sizeof(kStatePrefix) - 1), std::move(t));
  }
  return ck;
}

// The state must hold exactly the tensors of the architecture's network, with their shapes,
// before that network is allocated: a checksummed file can describe any architecture (64 blocks
// of 8 layers 4096 wide are 26 GB of weights) while holding a few small tensors.
absl::Status CheckStateMatchesArchitecture(
    const IResNetConfig& config, const std::vector<std::pair<std::string, at::Tensor>>& state) {
  std::unordered_map<std::string, std::vector<int64_t>> expected;
  const auto blocks = LayerShapes(config);
  for (size_t k = 0; k < blocks.size(); ++k) {
    for (size_t l = 0; l < blocks[k].size(); ++l) {
      const auto [in, out] = blocks[k][l];
      const std::string prefix = absl::StrCat("block", k, ".layer", l, ".");
      expected[prefix + "weight"] = {out, in};
      expected[prefix + "bias"] = {out};
      expected[prefix + "u"] = {out};
      expected[prefix + "v"] = {in};
      expected[prefix + "sigma"] = {};
    }
  }
  if (state.size() != expected.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("network state: the architecture has ", expected.size(), " tensors, the "
                     "checkpoint holds ", state.size()));
  }
  for (const auto& [name, tensor] : state) {
    auto it = expected.find(name);
    if (it == expected.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("network state: tensor '", name, "' is not part of the architecture"));
    }
    if (!tensor.defined() || tensor.sizes() != at::IntArrayRef(it->second)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "network state: tensor ", name, " has shape [",
          tensor.defined() ? absl::StrJoin(tensor.sizes(), ", ") : "", "], the architecture "
          "needs [", absl::StrJoin(it->second, ", "), "]"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

Checkpoint MakeCheckpoint(const IResNet& network, ProblemSpec problem, TrainingSpec training,
                          std::map<std::string, double> metrics,
                          std::map<std::string, std::vector<double>> curves) {
  Checkpoint ck;
  ck.architecture = network.config();
  ck.dtype = network.dtype();
  ck.problem = std::move(problem);
  ck.training = std::move(training);
  ck.metrics = std::move(metrics);
  ck.curves = std::move(curves);
  ck.certificate = network.Certify();
  for (const auto& [name, tensor] : network.NamedState()) {
    ck.state.emplace_back(name, tensor.detach().clone());
  }
  return ck;
}

std::string SerializeCheckpoint(const Checkpoint& ck) {
  ArchiveWriter w(kKind);
  PutArchitecture(ck.architecture, w);
  w.PutString("dtype", ck.dtype == at::kDouble ? "float64" : "float32");
  PutProblem(ck.problem, w);
  PutTraining(ck.training, w);
  for (const auto& [name, value] : ck.metrics) w.PutDouble(kMetricPrefix + name, value);
  for (const auto& [name, values] : ck.curves) w.PutDoubles(kCurvePrefix + name, values);
  for (const auto& [name, value] : ck.labels) w.PutString(kLabelPrefix + name, value);
  PutCertificate(ck.certificate, w);
  for (const auto& [name, tensor] : ck.state) w.PutTensor(kStatePrefix + name, tensor);
  return w.Finish();
}

absl::StatusOr<Checkpoint> ParseCheckpoint(std::string bytes) {
  INVNET_ASSIGN_OR_RETURN(ArchiveReader reader, ArchiveReader::Parse(std::move(bytes), kKind));
  absl::StatusOr<Checkpoint> ck = GuardTorchOr<Checkpoint>(
      "ParseCheckpoint", [&]() -> absl::StatusOr<Checkpoint> { return DecodeCheckpoint(reader); });
  if (!ck.ok() && ck.status().code() == absl::StatusCode::kInvalidArgument) {
    return absl::InvalidArgumentError(
        absl::StrCat("checkpoint content is invalid: ", ck.status().message()));
  }
  return ck;
}

absl::Status SaveCheckpoint(const Checkpoint& checkpoint, const std::string& path) {
  std::string bytes;
  INVNET_RETURN_IF_ERROR(GuardTorch("SaveCheckpoint", [&]() -> absl::Status {
    bytes = SerializeCheckpoint(checkpoint);
    return absl::OkStatus();
  }));
  return WriteFileAtomically(path, bytes);
}

absl::StatusOr<Checkpoint> LoadCheckpoint(const std::string& path) {
  INVNET_ASSIGN_OR_RETURN(std::string bytes, ReadFileToString(path));
  absl::StatusOr<Checkpoint> ck = ParseCheckpoint(std::move(bytes));
  if (!ck.ok()) return Annotate(ck.status(), path);
  return ck;
}

absl::StatusOr<std::unique_ptr<IResNet>> RestoreNetwork(const Checkpoint& checkpoint) {
  INVNET_RETURN_IF_ERROR(ValidateIResNetConfig(checkpoint.architecture));
  INVNET_RETURN_IF_ERROR(GuardTorch("RestoreNetwork", [&] {
    return CheckStateMatchesArchitecture(checkpoint.architecture, checkpoint.state);
  }));
  INVNET_ASSIGN_OR_RETURN(std::unique_ptr<IResNet> net,
                          IResNet::Create(checkpoint.architecture, checkpoint.dtype));
  INVNET_RETURN_IF_ERROR(GuardTorch("RestoreNetwork", [&]() -> absl::Status {
    INVNET_RETURN_IF_ERROR(net->LoadState(checkpoint.state));
    net->SetTraining(false);
    LipschitzCertificate cert = net->Certify();
    const auto& stored = checkpoint.certificate.block_bounds;
    if (stored.size() != cert.block_bounds.size()) {
      return absl::InvalidArgumentError("checkpoint certificate does not match the network");
    }
    for (size_t k = 0; k < stored.size(); ++k) {
      if (std::abs(stored[k] - cert.block_bounds[k]) > 1e-6 * std::max(1.0, stored[k])) {
        return absl::InvalidArgumentError(absl::StrCat(
            "checkpoint certificate does not match the weights: block ", k, " stored ",
            stored[k], ", recomputed ", cert.block_bounds[k]));
      }
    }
    if (!cert.invertible()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "network is not invertible: certified block Lipschitz bound ", cert.max_block_bound,
          " >= 1"));
    }
    return absl::OkStatus();
  }));
  return net;
}

}  // namespace invnet
