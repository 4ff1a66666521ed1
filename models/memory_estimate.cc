#include "models/memory_estimate.h"

#include <algorithm>

#include <ATen/ATen.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace invnet {
namespace {

constexpr double kFloat = 4;   // the network trains in float32
constexpr double kDouble = 8;  // operators, priors and estimators are float64

// Tensors of one training step: autograd keeps each layer's input, pre-activation, slope and
// output; the backward pass builds gradients of the same sizes beside them.
constexpr double kSavedPerLayerOutput = 4;
constexpr double kBackwardFactor = 2;

}  // namespace

std::vector<std::vector<std::pair<int64_t, int64_t>>> LayerShapes(const IResNetConfig& config) {
  std::vector<std::vector<std::pair<int64_t, int64_t>>> blocks(config.num_blocks);
  for (auto& block : blocks) {
    for (int64_t l = 0; l < config.layers_per_block; ++l) {
      const int64_t in = l == 0 ? config.dim : config.hidden_width;
      const int64_t out = l + 1 == config.layers_per_block ? config.dim : config.hidden_width;
      block.emplace_back(in, out);
    }
  }
  return blocks;
}

double NetworkStateNumbers(const IResNetConfig& config) {
  double numbers = 0;
  for (const auto& block : LayerShapes(config)) {
    for (const auto& [in, out] : block) {
      // weight [out, in], bias [out], u [out], v [in], sigma []
      numbers += static_cast<double>(in) * static_cast<double>(out) + 2.0 * out + in + 1;
    }
  }
  return numbers;
}

ProblemSize SizeOf(const ProblemSpec& problem, int64_t signal_dim) {
  ProblemSize size;
  size.measurement_dim = signal_dim;
  if (problem.op.kind == OperatorKind::kDense && problem.op.matrix.defined() &&
      problem.op.matrix.dim() == 2) {
    size.measurement_dim = problem.op.matrix.size(0);
  }
  if (problem.prior.has_value() && problem.prior->weights.defined()) {
    size.prior_components = problem.prior->weights.numel();
  }
  if (problem.dataset.has_value()) size.dataset_rows = problem.dataset->num_samples;
  return size;
}

TrainingMemory EstimateTrainingMemory(const IResNetConfig& a, const TrainingSpec& t,
                                      const ProblemSize& size) {
  TrainingMemory memory;
  const double n = static_cast<double>(a.dim);
  const double m = static_cast<double>(std::max<int64_t>(1, size.measurement_dim));
  const double h = static_cast<double>(a.hidden_width);
  const double width = std::max(n, h);
  const double blocks = static_cast<double>(a.num_blocks);
  const double layers = static_cast<double>(a.layers_per_block);
  const double batch = static_cast<double>(t.batch_size);
  const double state = NetworkStateNumbers(a);

  // The state, its gradients and Adam's two moments in float32; each inverse (validation, the
  // reconstruction loss) copies the weights twice (rows and columns) in float32 and float64; the
  // certificate's SVDs work on one float64 matrix at a time.
  double largest_layer = 0;
  for (const auto& block : LayerShapes(a)) {
    for (const auto& [in, out] : block) {
      largest_layer = std::max(largest_layer, static_cast<double>(in) * static_cast<double>(out));
    }
  }
  memory.network = 4 * kFloat * state + 2 * (kFloat + kDouble) * state + 4 * kDouble * largest_layer;

  // Tangent vectors carried through every layer: the Jacobian's columns (exact estimators) or
  // Hutchinson probes; the truncated power series for log det applies each block's Jacobian
  // log_det_series_terms times with a graph. The Russian roulette applies it without a graph
  // (one buffer at a time) and once with one.
  double tangents = 0;
  double applications = 1;
  const bool exact = a.dim <= t.exact_jacobian_max_dim;
  switch (t.loss) {
    case LossKind::kLogDet:
      tangents = exact ? n : static_cast<double>(t.hutchinson_probes);
      if (!exact && t.log_det_estimator == LogDetEstimator::kTruncatedSeries) {
        applications = static_cast<double>(t.log_det_series_terms);
      } else if (!exact) {
        applications = 2;
      }
      break;
    case LossKind::kDivergence:
      tangents = exact ? n : static_cast<double>(t.hutchinson_probes);
      break;
    case LossKind::kReconstruction:
      // The adjoint solve propagates the exact Jacobian (small n) or one cotangent, without a
      // graph; the inverse keeps a few [batch, width] buffers.
      tangents = exact ? n : 1;
      break;
    case LossKind::kApproximation:
      break;
  }
  const double forward = kSavedPerLayerOutput * batch * width * layers * blocks;
  const double jacobian = 2 * batch * tangents * width * layers * blocks * applications;
  // The exact log det also forms each block's [batch, n, n] Jacobian and its LU factors.
  const double dense_jacobians =
      exact && t.loss == LossKind::kLogDet ? 3 * batch * n * n * blocks : 0;
  memory.activations = kBackwardFactor * kFloat * (forward + jacobian + dense_jacobians);

  // The operator as a matrix (and A^T A, A^+ with its SVD's factors); the prior's per-component
  // covariances, factors and precisions and the exact estimators' gains and posterior
  // covariances; a dataset's samples (as uploaded and as float64); the validation set with its
  // exact posterior means ([rows, K, n] intermediates); one step's draws.
  const double k = static_cast<double>(size.prior_components);
  const double validation = static_cast<double>(t.validation_size);
  double problem = kDouble * (6 * m * n + 2 * n * n + m * m);
  problem += kDouble * k * (8 * n * n + 4 * m * m + 4 * m * n);
  problem += (kFloat + kDouble) * static_cast<double>(size.dataset_rows) * n;
  problem += kDouble * validation * (n + m) * 4;
  problem += kDouble * validation * std::max(1.0, k) * std::max(n, m) * 4;
  problem += kDouble * batch * (n + m) * 4;
  memory.problem = problem;
  return memory;
}

double PosteriorSpreadBytesPerSample(int64_t dim, int64_t hidden_width) {
  const double n = static_cast<double>(dim);
  const double width = std::max(n, static_cast<double>(hidden_width));
  // Tangents before and after a layer, their product with the slopes, and the block's running
  // sum; then J, sym(J) or T, its Cholesky factor and the triangular solve's result.
  return kDouble * (4 * n * width + 8 * n * n);
}

std::string FormatBytes(double bytes) {
  if (bytes >= 1e9) return absl::StrFormat("%.1f GB", bytes / 1e9);
  if (bytes >= 1e6) return absl::StrFormat("%.0f MB", bytes / 1e6);
  return absl::StrFormat("%.0f kB", std::max(1.0, bytes / 1e3));
}

std::string TrainingMemory::Describe() const {
  return absl::StrCat("network ", FormatBytes(network), ", activations ", FormatBytes(activations),
                      ", problem ", FormatBytes(problem));
}

}  // namespace invnet
