#include "models/estimators.h"

#include <cmath>
#include <memory>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "models/operators.h"
#include "models/priors.h"
#include "tests/testing/status_matchers.h"

namespace invnet {
namespace {

using ::invnet::testing::IsOk;
using ::invnet::testing::StatusIs;
using ::testing::HasSubstr;

constexpr double kPi = 3.14159265358979323846;

at::Generator Seeded(uint64_t seed) { return at::make_generator<at::CPUGeneratorImpl>(seed); }

std::unique_ptr<LinearOperator> Dense(const at::Tensor& matrix) {
  OperatorSpec spec;
  spec.kind = OperatorKind::kDense;
  spec.matrix = matrix;
  auto op = LinearOperator::Create(spec);
  EXPECT_THAT(op, IsOk());
  return op.ok() ? std::move(op).value() : nullptr;
}

// The bimodal2d problem of models/README.md section 5:
// 1/2 N((-1,0), 0.3^2 I) + 1/2 N((1,0), 0.3^2 I).
struct Problem {
  std::unique_ptr<GaussianMixture> prior;
  std::unique_ptr<LinearOperator> op;
  double delta = 0.0;
  std::unique_ptr<BayesEstimators> estimators;
};

Problem MakeProblem(std::unique_ptr<GaussianMixture> prior, const at::Tensor& matrix,
                    double delta) {
  Problem p;
  p.prior = std::move(prior);
  p.op = Dense(matrix);
  p.delta = delta;
  if (p.prior == nullptr || p.op == nullptr) return p;
  auto estimators = BayesEstimators::Create(*p.op, *p.prior, delta);
  EXPECT_THAT(estimators, IsOk());
  if (estimators.ok()) p.estimators = std::move(estimators).value();
  return p;
}

std::unique_ptr<GaussianMixture> Unwrap(absl::StatusOr<std::unique_ptr<GaussianMixture>> p) {
  EXPECT_THAT(p, IsOk());
  return p.ok() ? std::move(p).value() : nullptr;
}

Problem Bimodal() {
  return MakeProblem(
      Unwrap(GaussianMixture::Isotropic(
          {0.5, 0.5}, at::tensor({-1.0, 0.0, 1.0, 0.0}, at::kDouble).view({2, 2}), {0.3, 0.3})),
      at::tensor({0.9, 0.2, 0.1, 0.5}, at::kDouble).view({2, 2}), 0.2);
}

// Three full-covariance components in 2-D, for operators of any shape.
std::unique_ptr<GaussianMixture> ThreeComponents() {
  GaussianMixtureSpec spec;
  spec.weights = at::tensor({0.5, 0.3, 0.2}, at::kDouble);
  spec.means = at::tensor({-1.0, 0.0, 1.5, 0.5, 0.0, -2.0}, at::kDouble).view({3, 2});
  spec.covariances =
      at::tensor({0.30, 0.10, 0.10, 0.20, 0.50, -0.20, -0.20, 0.40, 0.05, 0.00, 0.00, 0.80},
                 at::kDouble)
          .view({3, 2, 2});
  return Unwrap(GaussianMixture::Create(spec));
}

// Measurements y = A x + delta eta for x from the prior.
at::Tensor Measurements(const Problem& p, int64_t count, uint64_t seed) {
  at::Generator gen = Seeded(seed);
  const at::Tensor x = p.prior->Sample(count, gen);
  return p.op->Apply(x) + p.delta * at::randn({count, p.op->output_dim()}, gen, at::kDouble);
}

// Test-side closed forms, written independently of the implementation (explicit inverses).
at::Tensor LogMeasurementDensity(const Problem& p, const at::Tensor& y) {
  const at::Tensor a = p.op->Matrix();
  const GaussianMixtureSpec& spec = p.prior->spec();
  std::vector<at::Tensor> terms;
  for (int64_t k = 0; k < p.prior->num_components(); ++k) {
    const at::Tensor c = at::matmul(at::matmul(a, spec.covariances[k]), a.t()) +
                         p.delta * p.delta * at::eye(a.size(0), at::kDouble);
    const at::Tensor r = y - at::mv(a, spec.means[k]);
    const at::Tensor quad = (at::matmul(r, at::inverse(c)) * r).sum(1);
    terms.push_back(std::log(spec.weights[k].item<double>()) - 0.5 * quad -
                    0.5 * std::log(at::det(2 * kPi * c).item<double>()));
  }
  return at::logsumexp(at::stack(terms, 1), 1);
}

// m_k(y) = mu_k + S_k A^T C_k^-1 (y - A mu_k), [B, K, n].
at::Tensor ComponentPosteriorMeans(const Problem& p, const at::Tensor& y) {
  const at::Tensor a = p.op->Matrix();
  const GaussianMixtureSpec& spec = p.prior->spec();
  std::vector<at::Tensor> means;
  for (int64_t k = 0; k < p.prior->num_components(); ++k) {
    const at::Tensor s = spec.covariances[k];
    const at::Tensor c =
        at::matmul(at::matmul(a, s), a.t()) + p.delta * p.delta * at::eye(a.size(0), at::kDouble);
    const at::Tensor gain = at::matmul(at::matmul(s, a.t()), at::inverse(c));
    means.push_back(spec.means[k] + at::matmul(y - at::mv(a, spec.means[k]), gain.t()));
  }
  return at::stack(means, 1);
}

// Self-normalised importance sampling from the prior: posterior mean, its standard error, and
// the posterior covariance with the standard error of each entry.
struct ImportanceEstimate {
  at::Tensor mean, mean_se, cov, cov_se;
  double effective_samples = 0.0;
};

ImportanceEstimate Importance(const Problem& p, const at::Tensor& x, const at::Tensor& y) {
  const at::Tensor log_w = -0.5 * (p.op->Apply(x) - y).pow(2).sum(1) / (p.delta * p.delta);
  const at::Tensor w = at::softmax(log_w, 0);  // normalised
  ImportanceEstimate e;
  e.mean = at::matmul(w, x);
  const at::Tensor centred = x - e.mean;
  const at::Tensor w2 = w.pow(2);
  e.mean_se = at::matmul(w2, centred.pow(2)).sqrt();
  const at::Tensor products = centred.unsqueeze(2) * centred.unsqueeze(1);  // [N, n, n]
  const int64_t n = x.size(1);
  e.cov = at::matmul(w, products.view({-1, n * n})).view({n, n});
  e.cov_se = at::matmul(w2, (products - e.cov).pow(2).view({-1, n * n})).sqrt().view({n, n});
  e.effective_samples = 1.0 / w2.sum().item<double>();
  return e;
}

double MaxAbs(const at::Tensor& t) { return t.abs().max().item<double>(); }

TEST(BayesEstimatorsTest, CreateRejectsBadProblems) {
  auto prior = Unwrap(GaussianMixture::Isotropic(
      {0.5, 0.5}, at::tensor({-1.0, 0.0, 1.0, 0.0}, at::kDouble).view({2, 2}), {0.3, 0.3}));
  ASSERT_NE(prior, nullptr);
  auto wide = Dense(at::ones({2, 3}, at::kDouble));  // expects x in R^3
  ASSERT_NE(wide, nullptr);
  EXPECT_THAT(BayesEstimators::Create(*wide, *prior, 0.2),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("operator")));
  auto square = Dense(at::eye(2, at::kDouble));
  ASSERT_NE(square, nullptr);
  for (double delta : {0.0, -0.1, static_cast<double>(NAN), static_cast<double>(INFINITY)}) {
    EXPECT_THAT(BayesEstimators::Create(*square, *prior, delta),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("noise_level")))
        << delta;
  }
  ASSERT_OK_AND_ASSIGN(auto estimators, BayesEstimators::Create(*square, *prior, 0.2));
  EXPECT_EQ(estimators->input_dim(), 2);
  EXPECT_EQ(estimators->output_dim(), 2);
}

TEST(BayesEstimatorsTest, ComputeMatchesEachEstimatorAcrossRowBlocks) {
  Problem p = Bimodal();
  ASSERT_NE(p.estimators, nullptr);
  // More rows than one block (32768), so the blocks are joined.
  const at::Tensor y = Measurements(p, 34000, 3);
  EstimatorSelection all{true, true, true, true, true};
  ASSERT_OK_AND_ASSIGN(Estimates e, p.estimators->Compute(y, all));
  EXPECT_LE(MaxAbs(e.posterior_mean - p.estimators->PosteriorMean(y)), 1e-12);
  EXPECT_LE(MaxAbs(e.posterior_std - p.estimators->PosteriorStd(y)), 1e-12);
  EXPECT_LE(MaxAbs(e.wiener - p.estimators->Wiener(y)), 1e-12);
  EXPECT_LE(MaxAbs(e.pseudo_inverse - p.estimators->PseudoInverse(y)), 1e-12);
  EXPECT_LE(MaxAbs(e.map.x - p.estimators->Map(y).x), 1e-12);
  EstimatorSelection only_pm;
  only_pm.posterior_mean = true;
  ASSERT_OK_AND_ASSIGN(Estimates pm, p.estimators->Compute(y, only_pm));
  EXPECT_TRUE(pm.posterior_mean.defined());
  EXPECT_FALSE(pm.map.x.defined());
  EXPECT_FALSE(pm.wiener.defined());
}

TEST(BayesEstimatorsTest, ComputeStopsWhenAsked) {
  Problem p = Bimodal();
  ASSERT_NE(p.estimators, nullptr);
  const at::Tensor y = Measurements(p, 100000, 4);
  int polls = 0;
  EstimatorSelection pm;
  pm.posterior_mean = true;
  EXPECT_THAT(p.estimators->Compute(y, pm, [&] { return ++polls >= 2; }),
              StatusIs(absl::StatusCode::kCancelled));
  EXPECT_EQ(polls, 2);  // between row blocks, and no further
  // The MAP search also polls inside its iterations: stopped at the first poll, it returns
  // without finishing any block of rows.
  polls = 0;
  EstimatorSelection map;
  map.map = true;
  EXPECT_THAT(p.estimators->Compute(y, map, [&] { return ++polls >= 1; }),
              StatusIs(absl::StatusCode::kCancelled));
  EXPECT_LE(polls, 3);
}

TEST(BayesEstimatorsTest, TweedieIdentityOnTheBimodalProblem) {
  Problem p = Bimodal();
  ASSERT_NE(p.estimators, nullptr);
  const at::Tensor y =
      at::cat({Measurements(p, 500, 1),
               at::tensor({0.0, 0.0, 30.0, -40.0, -1e3, 1e3}, at::kDouble).view({3, 2})});
  const at::Tensor lhs = p.op->Apply(p.estimators->PosteriorMean(y));
  const at::Tensor rhs = y + p.delta * p.delta * p.estimators->MeasurementScore(y);
  EXPECT_LE(MaxAbs((lhs - rhs) / (1.0 + y.abs())), 1e-12);
  EXPECT_TRUE(at::isfinite(lhs).all().item<bool>());
}

TEST(BayesEstimatorsTest, TweedieIdentityForNonSquareOperators) {
  for (const at::Tensor& matrix :
       {at::tensor({1.0, 0.3, -0.2, 0.8, 0.5, 0.5}, at::kDouble).view({3, 2}),  // tall
        at::tensor({0.7, -0.4}, at::kDouble).view({1, 2})}) {                   // wide
    Problem p = MakeProblem(ThreeComponents(), matrix, 0.3);
    ASSERT_NE(p.estimators, nullptr);
    EXPECT_EQ(p.estimators->output_dim(), matrix.size(0));
    const at::Tensor y = Measurements(p, 300, 2);
    const at::Tensor lhs = p.op->Apply(p.estimators->PosteriorMean(y));
    const at::Tensor rhs = y + p.delta * p.delta * p.estimators->MeasurementScore(y);
    EXPECT_LE(MaxAbs(lhs - rhs), 1e-12) << matrix;
  }
}

TEST(BayesEstimatorsTest, MeasurementScoreAndWeightsMatchClosedForms) {
  Problem p =
      MakeProblem(ThreeComponents(),
                  at::tensor({1.0, 0.3, -0.2, 0.8, 0.5, 0.5}, at::kDouble).view({3, 2}), 0.3);
  ASSERT_NE(p.estimators, nullptr);
  const at::Tensor y = Measurements(p, 40, 3);
  const at::Tensor score = p.estimators->MeasurementScore(y);
  constexpr double h = 1e-5;
  for (int64_t j = 0; j < 3; ++j) {
    at::Tensor e = at::zeros({1, 3}, at::kDouble);
    e[0][j] = h;
    const at::Tensor fd =
        (LogMeasurementDensity(p, y + e) - LogMeasurementDensity(p, y - e)) / (2 * h);
    EXPECT_LE(MaxAbs((fd - score.select(1, j)) / (1.0 + score.select(1, j).abs())), 1e-6);
  }
  // w_k(y) = pi_k N(y; A mu_k, C_k) / p_Y(y), by the test's own formula for one component.
  const at::Tensor weights = p.estimators->PosteriorWeights(y);
  EXPECT_LE(MaxAbs(weights.sum(1) - 1.0), 1e-14);
  const GaussianMixtureSpec& spec = p.prior->spec();
  const at::Tensor a = p.op->Matrix();
  for (int64_t k = 0; k < 3; ++k) {
    const at::Tensor c = at::matmul(at::matmul(a, spec.covariances[k]), a.t()) +
                         p.delta * p.delta * at::eye(3, at::kDouble);
    const at::Tensor r = y - at::mv(a, spec.means[k]);
    const at::Tensor log_component = std::log(spec.weights[k].item<double>()) -
                                     0.5 * (at::matmul(r, at::inverse(c)) * r).sum(1) -
                                     0.5 * std::log(at::det(2 * kPi * c).item<double>());
    const at::Tensor expected = (log_component - LogMeasurementDensity(p, y)).exp();
    EXPECT_LE(MaxAbs(weights.select(1, k) - expected), 1e-12) << "component " << k;
  }
}

TEST(BayesEstimatorsTest, PosteriorMomentsMatchImportanceSampling) {
  Problem p = Bimodal();
  ASSERT_NE(p.estimators, nullptr);
  constexpr int64_t kSamples = 400000;
  const at::Tensor x = p.prior->Sample(kSamples, Seeded(11));
  // Between the modes (bimodal posterior), at each mode, and off to the side.
  const at::Tensor ys =
      at::tensor({0.0, 0.0, 0.9, 0.1, -0.85, -0.05, 0.3, 0.25, -0.2, 0.4}, at::kDouble)
          .view({5, 2});
  const at::Tensor pm = p.estimators->PosteriorMean(ys);
  const at::Tensor cov = p.estimators->PosteriorCovariance(ys);
  const at::Tensor std = p.estimators->PosteriorStd(ys);
  EXPECT_LE(MaxAbs(std - cov.diagonal(0, 1, 2).sqrt()), 1e-14);
  for (int64_t i = 0; i < ys.size(0); ++i) {
    const ImportanceEstimate e = Importance(p, x, ys[i].unsqueeze(0));
    ASSERT_GT(e.effective_samples, 5000.0) << "too few effective samples for y " << ys[i];
    const at::Tensor mean_z = (pm[i] - e.mean).abs() / e.mean_se;
    EXPECT_LE(mean_z.max().item<double>(), 4.0)
        << "y " << ys[i] << "\nPM " << pm[i] << "\nIS " << e.mean << "\nSE " << e.mean_se;
    const at::Tensor cov_z = (cov[i] - e.cov).abs() / e.cov_se;
    EXPECT_LE(cov_z.max().item<double>(), 4.0)
        << "y " << ys[i] << "\nCov " << cov[i] << "\nIS " << e.cov << "\nSE " << e.cov_se;
  }
  // Covariances are symmetric positive definite.
  EXPECT_EQ(MaxAbs(cov - cov.transpose(1, 2)), 0.0);
  EXPECT_GT(at::linalg_eigvalsh(cov).min().item<double>(), 0.0);
}

TEST(BayesEstimatorsTest, MapIsACriticalPointNoWorseThanAnyStart) {
  Problem p = Bimodal();
  ASSERT_NE(p.estimators, nullptr);
  const at::Tensor y =
      at::cat({Measurements(p, 1000, 4),
               at::tensor({0.0, 0.0, 5.0, -5.0, 50.0, 20.0}, at::kDouble).view({3, 2})});
  const MapResult map = p.estimators->Map(y);
  ASSERT_EQ(map.x.sizes(), (std::vector<int64_t>{y.size(0), 2}));
  EXPECT_LE(map.gradient_norm.max().item<double>(), 1e-8);
  // The first-order condition recomputed here: A^T (A x - y) - delta^2 grad log p(x) = 0.
  const double d2 = p.delta * p.delta;
  const at::Tensor gradient = p.op->Adjoint(p.op->Apply(map.x) - y) - d2 * p.prior->Score(map.x);
  EXPECT_LE(MaxAbs(gradient), 1e-8);
  // A minimum, not a saddle: the objective's Hessian is positive definite there.
  const at::Tensor a = p.op->Matrix();
  const at::Tensor hessian =
      at::matmul(a.t(), a).unsqueeze(0) - d2 * p.prior->LogDensityHessian(map.x);
  EXPECT_GT(at::linalg_eigvalsh(hessian).min().item<double>(), 0.0);
  // The reported objective is the objective; it is no worse than at any start.
  const at::Tensor objective = p.estimators->MapObjective(map.x, y);
  EXPECT_LE(MaxAbs(objective - map.objective), 1e-14);
  const auto no_worse_than = [&](const at::Tensor& start, const char* name) {
    const at::Tensor start_objective = p.estimators->MapObjective(start, y);
    EXPECT_LE((map.objective - start_objective).max().item<double>(), 1e-12) << name;
  };
  no_worse_than(p.estimators->PosteriorMean(y), "posterior mean");
  const at::Tensor component_means = ComponentPosteriorMeans(p, y);
  no_worse_than(component_means.select(1, 0), "m_0");
  no_worse_than(component_means.select(1, 1), "m_1");
}

TEST(BayesEstimatorsTest, MapIsTheGlobalMinimumOnAGrid) {
  Problem p = Bimodal();
  ASSERT_NE(p.estimators, nullptr);
  const at::Tensor ys =
      at::tensor({0.05, 0.0, -0.3, 0.1, 0.6, -0.2, 1.0, 0.4}, at::kDouble).view({4, 2});
  const MapResult map = p.estimators->Map(ys);
  const at::Tensor axis = at::linspace(-2.5, 2.5, 501, at::kDouble);
  const std::vector<at::Tensor> mesh = at::meshgrid({axis, axis}, "ij");
  const at::Tensor grid = at::stack({mesh[0].reshape(-1), mesh[1].reshape(-1)}, 1);
  for (int64_t i = 0; i < ys.size(0); ++i) {
    const at::Tensor values = p.estimators->MapObjective(grid, ys[i].expand({grid.size(0), 2}));
    const int64_t best = values.argmin().item<int64_t>();
    EXPECT_LE(map.objective[i].item<double>(), values[best].item<double>() + 1e-14);
    // The grid spacing is 0.01, so its best point lies within a cell of the MAP.
    EXPECT_LE(MaxAbs(map.x[i] - grid[best]), 0.02) << "y " << ys[i];
  }
}

TEST(BayesEstimatorsTest, MapJumpsBetweenModesWhilePosteriorMeanMovesSmoothly) {
  // y = A (t, 0) for t in [-1, 1]: by symmetry the MAP switches mode at t = 0.
  Problem p = Bimodal();
  ASSERT_NE(p.estimators, nullptr);
  const at::Tensor t = at::linspace(-1.0, 1.0, 400, at::kDouble);  // t = 0 is not on the grid
  const at::Tensor x_line = at::stack({t, at::zeros_like(t)}, 1);
  const at::Tensor y = p.op->Apply(x_line);
  const at::Tensor map = p.estimators->Map(y).x.select(1, 0);
  const at::Tensor pm = p.estimators->PosteriorMean(y).select(1, 0);
  const at::Tensor map_steps = (map.narrow(0, 1, 399) - map.narrow(0, 0, 399)).abs();
  const at::Tensor pm_steps = (pm.narrow(0, 1, 399) - pm.narrow(0, 0, 399)).abs();
  const int64_t jump = map_steps.argmax().item<int64_t>();
  EXPECT_GT(map_steps[jump].item<double>(), 0.5);  // one jump across the valley
  EXPECT_LT(t[jump].item<double>(), 0.0);
  EXPECT_GT(t[jump + 1].item<double>(), 0.0);
  map_steps[jump] = 0.0;
  EXPECT_LT(map_steps.max().item<double>(), 0.05);  // continuous elsewhere
  EXPECT_LT(pm_steps.max().item<double>(), 0.1);    // the posterior mean does not jump
  EXPECT_TRUE((map.narrow(0, 0, 200) < 0).all().item<bool>());
  EXPECT_TRUE((map.narrow(0, 200, 200) > 0).all().item<bool>());
}

TEST(BayesEstimatorsTest, SingleGaussianPosteriorMeanMapAndWienerAgree) {
  GaussianMixtureSpec spec;
  spec.weights = at::ones({1}, at::kDouble);
  spec.means = at::tensor({0.5, -1.0, 2.0}, at::kDouble).view({1, 3});
  spec.covariances =
      at::tensor({1.0, 0.3, 0.1, 0.3, 0.5, -0.2, 0.1, -0.2, 0.8}, at::kDouble).view({1, 3, 3});
  const at::Tensor a =
      at::tensor({1.0, 0.5, 0.0, -0.3, 0.8, 0.4, 0.2, 0.1, 0.6, 0.0, 1.0, 1.0}, at::kDouble)
          .view({4, 3});
  Problem p = MakeProblem(Unwrap(GaussianMixture::Create(spec)), a, 0.25);
  ASSERT_NE(p.estimators, nullptr);
  const at::Tensor y = Measurements(p, 200, 5);
  const at::Tensor pm = p.estimators->PosteriorMean(y);
  const MapResult map = p.estimators->Map(y);
  const at::Tensor wiener = p.estimators->Wiener(y);
  // Tikhonov: (A^T A + d^2 S^-1)^-1 (A^T y + d^2 S^-1 mu), by explicit solves.
  const double d2 = p.delta * p.delta;
  const at::Tensor precision = at::inverse(spec.covariances[0]);
  const at::Tensor normal = at::matmul(a.t(), a) + d2 * precision;
  const at::Tensor rhs = at::matmul(y, a) + d2 * at::mv(precision, spec.means[0]);
  const at::Tensor tikhonov = at::linalg_solve(normal, rhs.t()).t();
  EXPECT_LE(MaxAbs(pm - tikhonov), 1e-10);
  EXPECT_LE(MaxAbs(map.x - tikhonov), 1e-10);
  EXPECT_LE(MaxAbs(wiener - tikhonov), 1e-10);
  // The posterior covariance is (A^T A / d^2 + S^-1)^-1 whatever y is.
  const at::Tensor expected_cov = at::inverse(normal / d2);
  EXPECT_LE(MaxAbs(p.estimators->PosteriorCovariance(y) - expected_cov), 1e-12);
}

TEST(BayesEstimatorsTest, WienerUsesTheMixtureMoments) {
  Problem p = Bimodal();
  ASSERT_NE(p.estimators, nullptr);
  const at::Tensor y = Measurements(p, 50, 6);
  const at::Tensor mu = p.prior->Mean();
  const at::Tensor s = p.prior->Covariance();  // diag(1 + 0.09, 0.09)
  EXPECT_TRUE(at::allclose(s, at::tensor({1.09, 0.0, 0.0, 0.09}, at::kDouble).view({2, 2})));
  const at::Tensor a = p.op->Matrix();
  const at::Tensor c = at::matmul(at::matmul(a, s), a.t()) + 0.04 * at::eye(2, at::kDouble);
  const at::Tensor expected =
      mu + at::matmul(y - at::mv(a, mu), at::matmul(at::matmul(s, a.t()), at::inverse(c)).t());
  EXPECT_LE(MaxAbs(p.estimators->Wiener(y) - expected), 1e-12);
  // Linear, unlike the posterior mean of a bimodal prior.
  EXPECT_GT(MaxAbs(p.estimators->Wiener(y) - p.estimators->PosteriorMean(y)), 0.1);
}

TEST(BayesEstimatorsTest, PseudoInverse) {
  Problem square = Bimodal();
  ASSERT_NE(square.estimators, nullptr);
  const at::Tensor y = at::randn({20, 2}, at::kDouble);
  const at::Tensor a = square.op->Matrix();
  EXPECT_LE(MaxAbs(square.estimators->PseudoInverse(y) - at::linalg_solve(a, y.t()).t()), 1e-12);
  // Tall: the least-squares solution, whose residual is orthogonal to the range of A.
  const at::Tensor tall_a =
      at::tensor({1.0, 0.3, -0.2, 0.8, 0.5, 0.5, 2.0, -1.0}, at::kDouble).view({4, 2});
  Problem tall = MakeProblem(ThreeComponents(), tall_a, 0.1);
  ASSERT_NE(tall.estimators, nullptr);
  const at::Tensor yt = at::randn({20, 4}, at::kDouble);
  const at::Tensor xt = tall.estimators->PseudoInverse(yt);
  const at::Tensor normal_solution =
      at::linalg_solve(at::matmul(tall_a.t(), tall_a), at::matmul(yt, tall_a).t()).t();
  EXPECT_LE(MaxAbs(xt - normal_solution), 1e-12);
  EXPECT_LE(MaxAbs(at::matmul(at::matmul(xt, tall_a.t()) - yt, tall_a)), 1e-12);
  // Wide: the minimum-norm solution A^T (A A^T)^-1 y.
  const at::Tensor wide_a = at::tensor({0.7, -0.4}, at::kDouble).view({1, 2});
  Problem wide = MakeProblem(ThreeComponents(), wide_a, 0.1);
  ASSERT_NE(wide.estimators, nullptr);
  const at::Tensor yw = at::randn({5, 1}, at::kDouble);
  EXPECT_LE(MaxAbs(wide.estimators->PseudoInverse(yw) - yw * wide_a / 0.65), 1e-14);
}

TEST(BayesEstimatorsTest, StableFarFromEveryComponent) {
  Problem p = Bimodal();
  ASSERT_NE(p.estimators, nullptr);
  const at::Tensor y = at::tensor({1e3, -1e3, -1e4, 5e3}, at::kDouble).view({2, 2});
  const MapResult map = p.estimators->Map(y);
  for (const at::Tensor& t : {p.estimators->PosteriorMean(y), p.estimators->PosteriorCovariance(y),
                              p.estimators->PosteriorWeights(y), p.estimators->MeasurementScore(y),
                              map.x, map.objective}) {
    EXPECT_TRUE(at::isfinite(t).all().item<bool>()) << t;
  }
  EXPECT_LE(MaxAbs(p.estimators->PosteriorWeights(y).sum(1) - 1.0), 1e-15);
  // The MAP still satisfies its first-order condition, relative to the size of A^T y.
  const at::Tensor scale = p.op->Adjoint(y).norm(2, 1);
  EXPECT_LE((map.gradient_norm / scale).max().item<double>(), 1e-12);
}

// The blur64 preset's shape (models/README.md section 5), smaller batch: 4 components in 64-D, an
// ill-conditioned periodic blur, small noise.
TEST(BayesEstimatorsTest, MapAndTweedieIn64Dimensions) {
  constexpr int64_t n = 64;
  const at::Tensor t = at::arange(n, at::kDouble);
  std::vector<at::Tensor> means;
  for (int k = 0; k < 4; ++k) means.push_back(0.8 * at::sin(2 * kPi * (k + 1) * t / n + k));
  const at::Tensor diff = (t.unsqueeze(0) - t.unsqueeze(1)).abs();
  const at::Tensor dist = at::minimum(diff, n - diff);
  const at::Tensor cov = 0.25 * at::exp(-dist.pow(2) / 32.0) + 1e-3 * at::eye(n, at::kDouble);
  GaussianMixtureSpec spec;
  spec.weights = at::full({4}, 0.25, at::kDouble);
  spec.means = at::stack(means);
  spec.covariances = cov.expand({4, n, n}).contiguous();
  OperatorSpec blur;
  blur.kind = OperatorKind::kConvolution;
  blur.dim = n;
  blur.kernel = GaussianBlurKernel(2.0, n);
  ASSERT_OK_AND_ASSIGN(auto op, LinearOperator::Create(blur));
  Problem p = MakeProblem(Unwrap(GaussianMixture::Create(spec)), op->Matrix(), 0.05);
  ASSERT_NE(p.estimators, nullptr);
  const at::Tensor y = Measurements(p, 100, 8);
  const at::Tensor lhs = p.op->Apply(p.estimators->PosteriorMean(y));
  const at::Tensor rhs = y + p.delta * p.delta * p.estimators->MeasurementScore(y);
  EXPECT_LE(MaxAbs(lhs - rhs), 1e-10);
  const MapResult map = p.estimators->Map(y);
  EXPECT_LE(map.gradient_norm.max().item<double>(), 1e-8);
  const at::Tensor start_objective = p.estimators->MapObjective(p.estimators->PosteriorMean(y), y);
  EXPECT_LE((map.objective - start_objective).max().item<double>(), 1e-12);
  const at::Tensor component_means = ComponentPosteriorMeans(p, y);
  for (int64_t k = 0; k < 4; ++k) {
    const at::Tensor objective_k = p.estimators->MapObjective(component_means.select(1, k), y);
    EXPECT_LE((map.objective - objective_k).max().item<double>(), 1e-12) << "m_" << k;
  }
  // The extra starts of n > 2 never make the answer worse.
  const MapResult basic = p.estimators->MapFromBasicStarts(y);
  EXPECT_LE((map.objective - basic.objective).max().item<double>(), 1e-12);
}

// n = 3, two overlapping anisotropic components and a large noise: many samples have two
// components of weight above 1e-3, and for those Map also starts at m_k(y) +- 1.5 sqrt(lambda_j)
// u_j along the top two eigenvectors of P_k = S_k - S_k A^T C_k^-1 A S_k (computed here). The
// answer is a critical point no worse than any of those starts, nor than the basic search's.
TEST(BayesEstimatorsTest, MapIn3DIsNoWorseThanThePrincipalStarts) {
  constexpr int64_t n = 3;
  GaussianMixtureSpec spec;
  spec.weights = at::tensor({0.5, 0.5}, at::kDouble);
  spec.means = at::tensor({-0.6, 0.0, 0.2, 0.6, 0.1, -0.2}, at::kDouble).view({2, n});
  const at::Tensor c0 = at::diag(at::tensor({0.05, 0.8, 0.3}, at::kDouble));
  const at::Tensor c1 = at::diag(at::tensor({0.6, 0.05, 0.4}, at::kDouble));
  spec.covariances = at::stack({c0, c1});
  const at::Tensor a = at::tensor({1.0, 0.3, 0.0, 0.0, 1.0, 0.5, 0.2, 0.0, 1.0}, at::kDouble)
                           .view({n, n});
  const double delta = 0.5;
  Problem p = MakeProblem(Unwrap(GaussianMixture::Create(spec)), a, delta);
  ASSERT_NE(p.estimators, nullptr);
  const at::Tensor y = Measurements(p, 200, 12);
  const MapResult map = p.estimators->Map(y);
  EXPECT_LE(map.gradient_norm.max().item<double>(), 1e-8);
  const MapResult basic = p.estimators->MapFromBasicStarts(y);
  EXPECT_LE((map.objective - basic.objective).max().item<double>(), 1e-12);
  const at::Tensor second = std::get<0>(p.estimators->PosteriorWeights(y).topk(2, 1)).select(1, 1);
  const at::Tensor ambiguous = second.ge(1e-3);
  ASSERT_GT(ambiguous.sum().item<int64_t>(), 20) << "the problem should be ambiguous often";
  const at::Tensor component_means = ComponentPosteriorMeans(p, y);
  for (int64_t k = 0; k < 2; ++k) {
    const at::Tensor s = spec.covariances[k];
    const at::Tensor c = at::matmul(at::matmul(a, s), a.t()) + delta * delta * at::eye(n, at::kDouble);
    const at::Tensor post = s - at::matmul(at::matmul(s, a.t()), at::linalg_solve(c, at::matmul(a, s)));
    auto [values, vectors] = at::linalg_eigh(0.5 * (post + post.t()));
    for (int64_t j = n - 2; j < n; ++j) {
      const at::Tensor offset = 1.5 * values[j].clamp_min(0).sqrt() * vectors.select(1, j);
      for (double sign : {1.0, -1.0}) {
        const at::Tensor start = component_means.select(1, k) + sign * offset.unsqueeze(0);
        const at::Tensor excess = (map.objective - p.estimators->MapObjective(start, y))
                                      .masked_select(ambiguous);
        EXPECT_LE(excess.max().item<double>(), 1e-12)
            << "principal start of m_" << k << " along u_" << j;
      }
    }
  }
}

}  // namespace
}  // namespace invnet
