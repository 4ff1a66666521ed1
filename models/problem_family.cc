#include "models/problem_family.h"

#include <cmath>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace invnet {
namespace {

// Draws of one family member, in a fixed order from one generator.
class Draws {
 public:
  explicit Draws(uint64_t seed) : gen_(at::make_generator<at::CPUGeneratorImpl>(seed)) {}

  double Uniform(double lo, double hi) {
    return lo + (hi - lo) * at::rand({1}, gen_, at::kDouble).item<double>();
  }
  at::Tensor Uniform(at::IntArrayRef shape, double lo, double hi) {
    return lo + (hi - lo) * at::rand(shape, gen_, at::kDouble);
  }
  at::Tensor Normal(at::IntArrayRef shape) { return at::randn(shape, gen_, at::kDouble); }
  // Haar-distributed orthogonal n x n matrix: QR of a Gaussian matrix with R's diagonal made
  // positive.
  at::Tensor Orthogonal(int64_t n) {
    auto [q, r] = at::linalg_qr(Normal({n, n}));
    return q * at::sign(at::diagonal(r)).unsqueeze(0);
  }
  int64_t Components() { return Uniform(0, 1) < 0.5 ? 2 : 3; }

 private:
  at::Generator gen_;
};

at::Tensor Weights(Draws& draws, int64_t k) {
  at::Tensor w = draws.Uniform({k}, 0.2, 1.0);
  return w / w.sum();
}

// U diag(sigma) V^T with random orthogonal U, V and det > 0: an iResNet preserves orientation
// (det J_phi > 0 everywhere), so no network in measurement space could approximate an A with
// det A < 0, and such a member would measure that, not the defaults.
at::Tensor MatrixWithSingularValues(Draws& draws, const at::Tensor& sigma) {
  const int64_t n = sigma.size(0);
  at::Tensor u = draws.Orthogonal(n);
  at::Tensor v = draws.Orthogonal(n);
  if (at::linalg_det(u).item<double>() * at::linalg_det(v).item<double>() < 0) {
    u.select(1, 0).neg_();
  }
  return at::matmul(u * sigma.unsqueeze(0), v.transpose(0, 1)).contiguous();
}

Preset WithDefaults(std::string name, std::string description, ProblemSpec problem,
                    LossKind loss) {
  Preset p;
  p.name = std::move(name);
  p.description = std::move(description);
  p.problem = std::move(problem);
  p.problem.preset = p.name;
  p.architecture = IResNetConfig();
  p.architecture.dim = p.problem.op.matrix.size(1);
  p.training = TrainingSpec();
  p.training.loss = loss;
  p.training.steps = DefaultTrainingSteps(p.architecture.dim);
  p.training.target_space = DefaultTargetSpace(loss, true);
  return p;
}

// The ranges a family draws its members from (problem_family.h).
struct FamilySpec {
  const char* name;
  int64_t n;
  double mean_half_width;  // means uniform in [-w, w]^n, or, when 0,
  double mean_stddev;      // means N(0, s^2 I)
  double spread_lo, spread_hi;  // each component's standard deviations along its axes
  double max_condition;         // of A
  double delta_lo, delta_hi;
};

constexpr FamilySpec kRandom2d = {"random2d", 2, 1.5, 0.0, 0.15, 0.5, 5.0, 0.1, 0.3};
constexpr FamilySpec kRandom8 = {"random8", 8, 0.0, 0.6, 0.1, 0.4, 10.0, 0.05, 0.2};

Preset RandomMember(const FamilySpec& family, uint64_t seed, LossKind loss) {
  const int64_t n = family.n;
  Draws draws(seed);
  const int64_t k = draws.Components();
  GaussianMixtureSpec prior;
  prior.weights = Weights(draws, k);
  prior.means = family.mean_half_width > 0
                    ? draws.Uniform({k, n}, -family.mean_half_width, family.mean_half_width)
                    : family.mean_stddev * draws.Normal({k, n});
  std::vector<at::Tensor> covariances;
  for (int64_t i = 0; i < k; ++i) {
    at::Tensor stddev = draws.Uniform({n}, family.spread_lo, family.spread_hi);
    at::Tensor q = draws.Orthogonal(n);
    covariances.push_back(at::matmul(q * stddev.pow(2).unsqueeze(0), q.transpose(0, 1)));
  }
  // Symmetric to the last bit: Q diag Q^T is only symmetric up to rounding.
  at::Tensor stacked = at::stack(covariances);
  prior.covariances = (0.5 * (stacked + stacked.transpose(1, 2))).contiguous();
  const double scale = draws.Uniform(0.6, 1.2);
  const double kappa = draws.Uniform(1.0, family.max_condition);
  // Singular values log-spaced from scale to scale / kappa.
  at::Tensor sigma = scale * at::pow(kappa, -at::linspace(0.0, 1.0, n, at::kDouble));
  ProblemSpec problem;
  problem.op.kind = OperatorKind::kDense;
  problem.op.matrix = MatrixWithSingularValues(draws, sigma);
  problem.op.dim = n;
  problem.noise_level = draws.Uniform(family.delta_lo, family.delta_hi);
  problem.prior = prior;
  std::string description = absl::StrFormat(
      "random %d-D problem %d: %d-component Gaussian mixture, dense A (condition %.2f), "
      "delta = %.3f",
      n, seed, k, kappa, problem.noise_level);
  return WithDefaults(FamilyMemberName(family.name, seed), std::move(description),
                      std::move(problem), loss);
}

}  // namespace

std::vector<std::string> ProblemFamilyNames() { return {"random2d", "random8"}; }

std::string FamilyMemberName(absl::string_view family, uint64_t seed) {
  return absl::StrCat(family, "-", seed);
}

absl::StatusOr<Preset> GetFamilyPreset(absl::string_view name, LossKind loss) {
  const size_t slash = name.rfind('-');
  uint64_t seed = 0;
  const absl::string_view family = name.substr(0, slash);
  const bool known = family == "random2d" || family == "random8";
  if (slash == absl::string_view::npos || !known ||
      !absl::SimpleAtoi(name.substr(slash + 1), &seed) ||
      name.substr(slash + 1).find_first_not_of("0123456789") != absl::string_view::npos) {
    return absl::NotFoundError(absl::StrCat(
        "preset: '", name, "' is not a family member FAMILY-SEED (families: ",
        absl::StrJoin(ProblemFamilyNames(), ", "), "; SEED a decimal number)"));
  }
  return RandomMember(family == "random2d" ? kRandom2d : kRandom8, seed, loss);
}

}  // namespace invnet
