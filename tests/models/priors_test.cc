#include "models/priors.h"

#include <cmath>
#include <memory>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace invnet {
namespace {

using ::invnet::testing::IsOk;
using ::invnet::testing::StatusIs;
using ::testing::HasSubstr;

constexpr double kPi = 3.14159265358979323846;

at::Generator Seeded(uint64_t seed) { return at::make_generator<at::CPUGeneratorImpl>(seed); }

// Three components in 2-D with full, different covariances and unequal weights.
GaussianMixtureSpec ThreeComponentSpec() {
  GaussianMixtureSpec spec;
  spec.weights = at::tensor({0.5, 0.3, 0.2}, at::kDouble);
  spec.means = at::tensor({-1.0, 0.0, 1.5, 0.5, 0.0, -2.0}, at::kDouble).view({3, 2});
  spec.covariances = at::tensor({0.30, 0.10, 0.10, 0.20,    //
                                 0.50, -0.20, -0.20, 0.40,  //
                                 0.05, 0.00, 0.00, 0.80},
                                at::kDouble)
                         .view({3, 2, 2});
  return spec;
}

std::unique_ptr<GaussianMixture> ThreeComponents() {
  auto mixture = GaussianMixture::Create(ThreeComponentSpec());
  EXPECT_THAT(mixture, IsOk());
  return mixture.ok() ? std::move(mixture).value() : nullptr;
}

TEST(GaussianMixtureTest, AcceptsAValidSpecAndKeepsItInFloat64) {
  GaussianMixtureSpec spec = ThreeComponentSpec();
  spec.means = spec.means.to(at::kFloat);
  ASSERT_OK_AND_ASSIGN(auto mixture, GaussianMixture::Create(spec));
  EXPECT_EQ(mixture->dim(), 2);
  EXPECT_EQ(mixture->num_components(), 3);
  EXPECT_EQ(mixture->spec().means.scalar_type(), at::kDouble);
  // Stored factors reproduce the covariances; precisions are their inverses.
  const at::Tensor l = mixture->cholesky_factors();
  EXPECT_TRUE(
      at::allclose(at::matmul(l, l.transpose(1, 2)), ThreeComponentSpec().covariances, 0, 1e-14));
  EXPECT_TRUE(at::allclose(at::matmul(mixture->precisions(), ThreeComponentSpec().covariances),
                           at::eye(2, at::kDouble).expand({3, 2, 2}), 0, 1e-12));
}

TEST(GaussianMixtureTest, InvalidSpecsAreRejectedByField) {
  const auto expect_error = [](const GaussianMixtureSpec& spec, const std::string& message) {
    EXPECT_THAT(GaussianMixture::Create(spec),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(message)))
        << message;
  };
  GaussianMixtureSpec spec = ThreeComponentSpec();
  spec.weights = at::tensor({0.5, 0.3, 0.1}, at::kDouble);
  expect_error(spec, "prior.weights: must sum to 1 (got 0.9)");
  spec.weights = at::tensor({0.9, -0.1, 0.2}, at::kDouble);
  expect_error(spec, "prior.weights[1]: must be positive");
  spec.weights = at::tensor({0.5, 0.5}, at::kDouble);
  expect_error(spec, "prior.means: expected [K, n]");
  spec.weights = at::empty({0}, at::kDouble);
  expect_error(spec, "prior.weights: need at least one component");
  spec.weights = at::Tensor();
  expect_error(spec, "prior.weights: missing");
  spec.weights = at::tensor({1.0, NAN, 0.0}, at::kDouble);
  expect_error(spec, "prior.weights: holds NaN or Inf");

  spec = ThreeComponentSpec();
  spec.means = at::zeros({6}, at::kDouble);
  expect_error(spec, "prior.means: expected [K, n]");
  spec.means = ThreeComponentSpec().means.clone();
  spec.means[2][1] = INFINITY;
  expect_error(spec, "prior.means: holds NaN or Inf");
  spec.means = at::zeros({3, 2}, at::kInt);
  expect_error(spec, "prior.means: must be a floating-point tensor");

  spec = ThreeComponentSpec();
  spec.covariances = at::eye(3, at::kDouble).expand({3, 3, 3}).contiguous();
  expect_error(spec, "prior.covariances: expected [K, n, n]");
  spec.covariances = ThreeComponentSpec().covariances.clone();
  spec.covariances[1][0][1] = -0.8;  // symmetric but indefinite: det = 0.2 - 0.64 < 0
  spec.covariances[1][1][0] = -0.8;
  expect_error(spec, "prior.covariances[1]: not positive definite");
  spec.covariances = ThreeComponentSpec().covariances.clone();
  spec.covariances[2][1][1] = -1.0;
  expect_error(spec, "prior.covariances[2]: not positive definite");
  spec.covariances = ThreeComponentSpec().covariances.clone();
  spec.covariances[0][0][1] = 0.1 + 1e-6;
  expect_error(spec, "prior.covariances[0]: not symmetric");
}

TEST(GaussianMixtureTest, ToleratesRoundOffAsymmetryAndWeightSums) {
  GaussianMixtureSpec spec = ThreeComponentSpec();
  spec.covariances[0][0][1] = 0.1 * (1 + 1e-12);
  spec.weights = at::tensor({0.5, 0.3, 0.2 + 5e-7}, at::kDouble);
  ASSERT_OK_AND_ASSIGN(auto mixture, GaussianMixture::Create(spec));
  // Kept renormalised, and the covariances exactly symmetric.
  EXPECT_NEAR(mixture->spec().weights.sum().item<double>(), 1.0, 1e-15);
  const at::Tensor s = mixture->spec().covariances;
  EXPECT_TRUE(at::equal(s, s.transpose(1, 2)));
}

TEST(GaussianMixtureTest, ShortcutsValidateAndBuildTheirCovariances) {
  const at::Tensor means = at::tensor({0.0, 1.0, 2.0, 3.0}, at::kDouble).view({2, 2});
  ASSERT_OK_AND_ASSIGN(auto iso, GaussianMixture::Isotropic({0.4, 0.6}, means, {0.5, 2.0}));
  EXPECT_TRUE(at::allclose(iso->spec().covariances[1], 4.0 * at::eye(2, at::kDouble)));
  EXPECT_TRUE(at::allclose(iso->spec().covariances[0], 0.25 * at::eye(2, at::kDouble)));
  EXPECT_THAT(GaussianMixture::Isotropic({0.4, 0.6}, means, {0.5, 0.0}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("prior.stddevs[1]")));
  EXPECT_THAT(GaussianMixture::Isotropic({0.4, 0.6}, means, {-0.5, 1.0}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("prior.stddevs[0]")));
  EXPECT_THAT(GaussianMixture::Isotropic({0.4, 0.6}, means, {NAN, 1.0}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("prior.stddevs[0]")));
  EXPECT_THAT(GaussianMixture::Isotropic({0.4, 0.6}, means, {1.0}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("prior.stddevs")));
  EXPECT_THAT(GaussianMixture::Isotropic({0.4, 0.5}, means, {1.0, 1.0}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("prior.weights")));

  const at::Tensor variances = at::tensor({1.0, 2.0, 3.0, 4.0}, at::kDouble).view({2, 2});
  ASSERT_OK_AND_ASSIGN(auto diag, GaussianMixture::Diagonal({0.4, 0.6}, means, variances));
  EXPECT_TRUE(at::equal(diag->spec().covariances[1],
                        at::tensor({3.0, 0.0, 0.0, 4.0}, at::kDouble).view({2, 2})));
  at::Tensor bad = variances.clone();
  bad[0][1] = 0.0;
  EXPECT_THAT(GaussianMixture::Diagonal({0.4, 0.6}, means, bad),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("prior.variances[0][1]")));
  EXPECT_THAT(GaussianMixture::Diagonal({0.4, 0.6}, means, at::ones({2, 3}, at::kDouble)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("prior.variances")));
  bad = variances.clone();
  bad[1][0] = NAN;
  EXPECT_THAT(GaussianMixture::Diagonal({0.4, 0.6}, means, bad),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("prior.variances")));
}

TEST(GaussianMixtureTest, MeanAndCovarianceOfTheMixture) {
  // 1-D: E x = sum w mu, Var x = sum w (s^2 + mu^2) - (E x)^2.
  ASSERT_OK_AND_ASSIGN(
      auto mixture,
      GaussianMixture::Isotropic({0.25, 0.75}, at::tensor({-2.0, 1.0}, at::kDouble).view({2, 1}),
                                 {0.5, 1.5}));
  const double mean = 0.25 * -2.0 + 0.75 * 1.0;
  const double var = 0.25 * (0.25 + 4.0) + 0.75 * (2.25 + 1.0) - mean * mean;
  EXPECT_NEAR(mixture->Mean().item<double>(), mean, 1e-15);
  EXPECT_NEAR(mixture->Covariance().item<double>(), var, 1e-14);
}

TEST(GaussianMixtureTest, SamplesMatchTheMixtureMoments) {
  auto mixture = ThreeComponents();
  ASSERT_NE(mixture, nullptr);
  constexpr int64_t kCount = 200000;
  const at::Tensor x = mixture->Sample(kCount, Seeded(7));
  ASSERT_EQ(x.sizes(), (std::vector<int64_t>{kCount, 2}));
  ASSERT_EQ(x.scalar_type(), at::kDouble);
  const at::Tensor mean = mixture->Mean();
  const at::Tensor cov = mixture->Covariance();
  // Mean: standard error sqrt(diag(Cov) / N).
  const at::Tensor mean_se = (cov.diagonal() / kCount).sqrt();
  const at::Tensor mean_z = (x.mean(0) - mean).abs() / mean_se;
  EXPECT_LE(mean_z.max().item<double>(), 4.0) << x.mean(0) << mean;
  // Covariance: the standard error of each entry from the spread of the centred products.
  const at::Tensor centred = x - mean;
  const at::Tensor products = centred.unsqueeze(2) * centred.unsqueeze(1);  // [N, 2, 2]
  const at::Tensor cov_se = products.std(0) / std::sqrt(static_cast<double>(kCount));
  const at::Tensor cov_z = (products.mean(0) - cov).abs() / cov_se;
  EXPECT_LE(cov_z.max().item<double>(), 4.0) << products.mean(0) << cov;
  // Mixing proportions: the fraction of samples near the third (narrow in x_0) component.
  const double near_third = (x.select(1, 0).abs() < 0.5)
                                .logical_and(x.select(1, 1) < -2.0)
                                .to(at::kDouble)
                                .mean()
                                .item<double>();
  EXPECT_GT(near_third, 0.05);
}

TEST(GaussianMixtureTest, SameSeedGivesSameSamples) {
  auto mixture = ThreeComponents();
  ASSERT_NE(mixture, nullptr);
  const at::Tensor a = mixture->Sample(1000, Seeded(42));
  const at::Tensor b = mixture->Sample(1000, Seeded(42));
  const at::Tensor c = mixture->Sample(1000, Seeded(43));
  EXPECT_TRUE(at::equal(a, b));
  EXPECT_FALSE(at::equal(a, c));
  EXPECT_EQ(mixture->Sample(0, Seeded(1)).sizes(), (std::vector<int64_t>{0, 2}));
}

TEST(GaussianMixtureTest, SingleGaussianMatchesClosedForm) {
  // N(mu, S) in 2-D with S = [[a, b], [b, c]]: closed-form inverse and determinant.
  const double a = 0.7, b = -0.3, c = 0.4;
  const double mu0 = 0.5, mu1 = -1.0;
  GaussianMixtureSpec spec;
  spec.weights = at::ones({1}, at::kDouble);
  spec.means = at::tensor({mu0, mu1}, at::kDouble).view({1, 2});
  spec.covariances = at::tensor({a, b, b, c}, at::kDouble).view({1, 2, 2});
  ASSERT_OK_AND_ASSIGN(auto gaussian, GaussianMixture::Create(spec));
  const double det = a * c - b * b;
  const double p00 = c / det, p01 = -b / det, p11 = a / det;  // S^-1
  const at::Tensor x = at::tensor({0.0, 0.0, 1.0, 2.0, -3.0, 0.25}, at::kDouble).view({3, 2});
  const at::Tensor log_p = gaussian->LogDensity(x);
  const at::Tensor score = gaussian->Score(x);
  const at::Tensor hessian = gaussian->LogDensityHessian(x);
  for (int64_t i = 0; i < 3; ++i) {
    const double d0 = x[i][0].item<double>() - mu0;
    const double d1 = x[i][1].item<double>() - mu1;
    const double quad = p00 * d0 * d0 + 2 * p01 * d0 * d1 + p11 * d1 * d1;
    EXPECT_NEAR(log_p[i].item<double>(), -0.5 * quad - 0.5 * std::log(4 * kPi * kPi * det), 1e-13);
    EXPECT_NEAR(score[i][0].item<double>(), -(p00 * d0 + p01 * d1), 1e-13);
    EXPECT_NEAR(score[i][1].item<double>(), -(p01 * d0 + p11 * d1), 1e-13);
    EXPECT_NEAR(hessian[i][0][0].item<double>(), -p00, 1e-12);
    EXPECT_NEAR(hessian[i][0][1].item<double>(), -p01, 1e-12);
    EXPECT_NEAR(hessian[i][1][1].item<double>(), -p11, 1e-12);
  }
  EXPECT_TRUE(at::allclose(gaussian->Responsibilities(x), at::ones({3, 1}, at::kDouble)));
}

TEST(GaussianMixtureTest, ScoreMatchesFiniteDifferencesOfLogDensity) {
  auto mixture = ThreeComponents();
  ASSERT_NE(mixture, nullptr);
  const at::Tensor x = mixture->Sample(50, Seeded(3)) * 1.5;  // inside and between components
  const at::Tensor score = mixture->Score(x);
  constexpr double h = 1e-5;
  for (int64_t j = 0; j < 2; ++j) {
    at::Tensor e = at::zeros({1, 2}, at::kDouble);
    e[0][j] = h;
    const at::Tensor fd = (mixture->LogDensity(x + e) - mixture->LogDensity(x - e)) / (2 * h);
    const at::Tensor error = (fd - score.select(1, j)).abs() / (1.0 + score.select(1, j).abs());
    EXPECT_LE(error.max().item<double>(), 1e-6) << "coordinate " << j;
  }
}

TEST(GaussianMixtureTest, HessianMatchesFiniteDifferencesOfScore) {
  auto mixture = ThreeComponents();
  ASSERT_NE(mixture, nullptr);
  const at::Tensor x = mixture->Sample(50, Seeded(4)) * 1.5;
  const at::Tensor hessian = mixture->LogDensityHessian(x);
  EXPECT_LE((hessian - hessian.transpose(1, 2)).abs().max().item<double>(), 1e-12);
  constexpr double h = 1e-5;
  for (int64_t j = 0; j < 2; ++j) {
    at::Tensor e = at::zeros({1, 2}, at::kDouble);
    e[0][j] = h;
    const at::Tensor fd = (mixture->Score(x + e) - mixture->Score(x - e)) / (2 * h);  // column j
    const at::Tensor column = hessian.select(2, j);
    const at::Tensor error = (fd - column).abs() / (1.0 + column.abs());
    EXPECT_LE(error.max().item<double>(), 1e-5) << "column " << j;
  }
}

TEST(GaussianMixtureTest, StableFarFromEveryComponent) {
  auto mixture = ThreeComponents();
  ASSERT_NE(mixture, nullptr);
  const at::Tensor x =
      at::tensor({1e3, 1e3, -1e3, 1e3, 1e3, -1e3, 1e4, 0.0}, at::kDouble).view({4, 2});
  const at::Tensor log_p = mixture->LogDensity(x);
  const at::Tensor gamma = mixture->Responsibilities(x);
  const at::Tensor score = mixture->Score(x);
  const at::Tensor hessian = mixture->LogDensityHessian(x);
  EXPECT_TRUE(at::isfinite(log_p).all().item<bool>()) << log_p;
  EXPECT_TRUE(at::isfinite(gamma).all().item<bool>()) << gamma;
  EXPECT_TRUE(at::isfinite(score).all().item<bool>()) << score;
  EXPECT_TRUE(at::isfinite(hessian).all().item<bool>()) << hessian;
  EXPECT_TRUE(at::allclose(gamma.sum(1), at::ones({4}, at::kDouble), 0, 1e-15));
  // So far out a single component dominates: log p, score and Hessian are its own.
  const GaussianMixtureSpec& spec = mixture->spec();
  for (int64_t i = 0; i < 4; ++i) {
    const int64_t k = gamma[i].argmax().item<int64_t>();
    EXPECT_GT(gamma[i][k].item<double>(), 1.0 - 1e-12);
    const at::Tensor d = x[i] - spec.means[k];
    const at::Tensor p = mixture->precisions()[k];
    const double log_k = std::log(spec.weights[k].item<double>()) -
                         0.5 * at::dot(d, at::mv(p, d)).item<double>() -
                         0.5 * std::log(at::det(2 * kPi * spec.covariances[k]).item<double>());
    EXPECT_NEAR(log_p[i].item<double>(), log_k, 1e-12 * std::abs(log_k));
    EXPECT_TRUE(at::allclose(score[i], -at::mv(p, d), 1e-10, 1e-10));
    EXPECT_TRUE(at::allclose(hessian[i], -p, 1e-6, 1e-6));
  }
}

TEST(GaussianMixtureTest, AcceptsFloat32InputsAndReturnsFloat64) {
  auto mixture = ThreeComponents();
  ASSERT_NE(mixture, nullptr);
  const at::Tensor x = at::tensor({0.5f, -0.25f}).view({1, 2});
  EXPECT_EQ(mixture->Score(x).scalar_type(), at::kDouble);
  EXPECT_TRUE(at::allclose(mixture->LogDensity(x), mixture->LogDensity(x.to(at::kDouble))));
}

TEST(EmpiricalDatasetTest, ValidatesItsSamples) {
  EXPECT_THAT(EmpiricalDataset::Create(at::zeros({5}, at::kDouble)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("dataset.samples")));
  EXPECT_THAT(EmpiricalDataset::Create(at::zeros({0, 3}, at::kDouble)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("empty batch")));
  EXPECT_THAT(EmpiricalDataset::Create(at::zeros({4, 0}, at::kDouble)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("dataset.samples")));
  at::Tensor bad = at::zeros({4, 3}, at::kDouble);
  bad[2][1] = NAN;
  EXPECT_THAT(EmpiricalDataset::Create(bad),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("sample 2")));
  EXPECT_THAT(EmpiricalDataset::Create(at::Tensor()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("missing")));
  ASSERT_OK_AND_ASSIGN(auto dataset, EmpiricalDataset::Create(at::zeros({4, 3}, at::kFloat)));
  EXPECT_EQ(dataset->samples().scalar_type(), at::kDouble);
  EXPECT_EQ(dataset->dim(), 3);
  EXPECT_EQ(dataset->size(), 4);
}

TEST(EmpiricalDatasetTest, SamplesOnlyRowsOfTheDataAndAllOfThem) {
  const at::Tensor data = at::randn({20, 3}, at::kDouble);
  ASSERT_OK_AND_ASSIGN(auto dataset, EmpiricalDataset::Create(data));
  const at::Tensor drawn = dataset->Sample(2000, Seeded(5));
  ASSERT_EQ(drawn.sizes(), (std::vector<int64_t>{2000, 3}));
  // Every draw equals a data row bit for bit, and every row gets drawn. Compared elementwise:
  // at::cdist goes through a matrix product on some CPUs (AVX-512), where the distance of a row
  // to itself comes out as 4e-8, not 0.
  const at::Tensor same = drawn.unsqueeze(1).eq(data.unsqueeze(0)).all(2);  // [2000, 20]
  EXPECT_TRUE(same.any(1).all().item<bool>());
  EXPECT_GT(same.sum(0).min().item<int64_t>(), 0);
  EXPECT_TRUE(at::equal(dataset->Sample(100, Seeded(9)), dataset->Sample(100, Seeded(9))));
}

TEST(EmpiricalDatasetTest, SplitHoldoutTakesTheGivenRowsAndKeepsTheRestInOrder) {
  const at::Tensor data = at::arange(30, at::kDouble).view({10, 3});
  ASSERT_OK_AND_ASSIGN(auto dataset, EmpiricalDataset::Create(data));
  ASSERT_OK_AND_ASSIGN(auto split, dataset->SplitHoldout(at::tensor({8, 2, 5}, at::kLong)));
  EXPECT_EQ(split.first->size(), 7);
  EXPECT_TRUE(at::equal(split.second, data.index_select(0, at::tensor({8, 2, 5}, at::kLong))));
  EXPECT_TRUE(at::equal(split.first->samples(),
                        data.index_select(0, at::tensor({0, 1, 3, 4, 6, 7, 9}, at::kLong))));
  const std::vector<std::vector<int64_t>> bad = {{}, {0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, {10}, {-1},
                                                 {3, 3}};
  for (const std::vector<int64_t>& rows : bad) {
    EXPECT_THAT(dataset->SplitHoldout(at::tensor(rows, at::kLong)),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("holdout")))
        << rows.size();
  }
  EXPECT_THAT(dataset->SplitHoldout(at::arange(9, at::kLong)), IsOk());
}

}  // namespace
}  // namespace invnet
