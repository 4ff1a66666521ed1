#include "models/presets.h"

#include <cmath>

#include <ATen/ATen.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "models/problem_family.h"

namespace invnet {
namespace {

constexpr double kPi = 3.14159265358979323846;

Preset Bimodal2d(LossKind loss) {
  Preset p;
  p.name = "bimodal2d";
  p.description =
      "2-D two-mode Gaussian mixture, A = [[0.9, 0.2], [0.1, 0.5]], delta = 0.2 "
      "(models/README.md section 5)";
  p.problem.preset = p.name;
  p.problem.op.kind = OperatorKind::kDense;
  p.problem.op.matrix = at::tensor({0.9, 0.2, 0.1, 0.5}, at::kDouble).view({2, 2});
  p.problem.op.dim = 2;
  p.problem.noise_level = 0.2;
  GaussianMixtureSpec prior;
  prior.weights = at::tensor({0.5, 0.5}, at::kDouble);
  prior.means = at::tensor({-1.0, 0.0, 1.0, 0.0}, at::kDouble).view({2, 2});
  prior.covariances = (at::eye(2, at::kDouble) * 0.09).expand({2, 2, 2}).contiguous();
  p.problem.prior = prior;
  p.architecture.dim = 2;
  p.architecture.num_blocks = 4;
  p.architecture.hidden_width = 64;
  p.architecture.layers_per_block = 3;
  p.architecture.activation = Activation::kElu;
  p.architecture.lipschitz_coeff = 0.9;
  p.training.loss = loss;
  p.training.target_space = DefaultTargetSpace(loss, true);
  p.training.steps = 3000;
  p.training.batch_size = 512;
  // The reference run (models/README.md section 5) used Adam 1e-3; with our cosine decay 3e-3
  // reaches its table in the same 3000 steps (at 1e-3 the PM-like losses stop at about 1.03x the
  // Bayes risk instead of 1.01x).
  p.training.learning_rate = 3e-3;
  p.training.validation_every = 250;
  p.training.validation_size = 2000;
  return p;
}

Preset Blur64(LossKind loss) {
  constexpr int64_t n = 64;
  Preset p;
  p.name = "blur64";
  p.description =
      "64-sample periodic signals, 4-component Gaussian mixture of sinusoids, periodic Gaussian "
      "blur (sigma 2), delta = 0.05 (models/README.md section 5)";
  p.problem.preset = p.name;
  p.problem.op.kind = OperatorKind::kConvolution;
  p.problem.op.dim = n;
  p.problem.op.kernel = GaussianBlurKernel(2.0, n);  // all 64 taps: the exact periodic blur
  p.problem.op.boundary = Boundary::kPeriodic;
  p.problem.noise_level = 0.05;
  at::Tensor t = at::arange(n, at::kDouble);
  std::vector<at::Tensor> means;
  for (int k = 0; k < 4; ++k) means.push_back(0.8 * at::sin(2 * kPi * (k + 1) * t / n + k));
  at::Tensor diff = (t.unsqueeze(0) - t.unsqueeze(1)).abs();
  at::Tensor dist = at::minimum(diff, n - diff);  // periodic distance
  at::Tensor cov = 0.25 * at::exp(-dist.pow(2) / (2 * 16.0)) + 1e-3 * at::eye(n, at::kDouble);
  GaussianMixtureSpec prior;
  prior.weights = at::full({4}, 0.25, at::kDouble);
  prior.means = at::stack(means);
  prior.covariances = cov.expand({4, n, n}).contiguous();
  p.problem.prior = prior;
  p.architecture.dim = n;
  p.architecture.num_blocks = 6;
  p.architecture.hidden_width = 256;
  p.architecture.layers_per_block = 3;
  p.architecture.activation = Activation::kElu;
  // Block bound 0.857 = 0.95^3: the network class this preset's table was measured with (every
  // layer at 0.95, before c came to bound the block). Six blocks at 0.95 would make phi^-1's
  // Lipschitz bound 20^5 = 3.2e6, and float64 could then certify no tolerance below about 1e-3.
  p.architecture.lipschitz_coeff = 0.857;
  p.training.loss = loss;
  p.training.target_space = DefaultTargetSpace(loss, true);
  p.training.steps = 3000;
  p.training.batch_size = 256;
  p.training.learning_rate = 1e-3;
  p.training.validation_every = 500;
  p.training.validation_size = 1000;
  p.training.hutchinson_probes = 1;
  return p;
}

}  // namespace

std::vector<std::string> PresetNames() { return {"bimodal2d", "blur64"}; }

TargetSpace DefaultTargetSpace(LossKind loss, bool square_operator) {
  if (loss == LossKind::kDivergence || !square_operator) return TargetSpace::kNormal;
  return TargetSpace::kMeasurement;
}

int64_t DefaultTrainingSteps(int64_t dim) { return dim < 8 ? 3000 : 6000; }

absl::StatusOr<Preset> GetPreset(absl::string_view name, LossKind loss) {
  if (name == "bimodal2d") return Bimodal2d(loss);
  if (name == "blur64") return Blur64(loss);
  if (name.find('-') != absl::string_view::npos) return GetFamilyPreset(name, loss);
  return absl::NotFoundError(absl::StrCat("preset: unknown '", name, "' (known: ",
                                          absl::StrJoin(PresetNames(), ", "), ", or FAMILY-SEED of ",
                                          absl::StrJoin(ProblemFamilyNames(), ", "), ")"));
}

}  // namespace invnet
