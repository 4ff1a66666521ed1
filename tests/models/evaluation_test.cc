#include "models/evaluation.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "models/estimators.h"
#include "models/inverse.h"
#include "models/iresnet.h"
#include "models/operators.h"
#include "models/posterior_spread.h"
#include "models/priors.h"
#include "models/trainer.h"
#include "tests/testing/status_matchers.h"

namespace invnet {
namespace {

using ::invnet::testing::IsOk;
using ::invnet::testing::StatusIs;
using ::testing::HasSubstr;

at::Generator Seeded(uint64_t seed) { return at::make_generator<at::CPUGeneratorImpl>(seed); }

at::Tensor Matrix2(double a, double b, double c, double d) {
  return at::tensor({a, b, c, d}, at::kDouble).view({2, 2});
}

OperatorSpec IdentitySpec(int64_t dim) {
  OperatorSpec spec;
  spec.kind = OperatorKind::kIdentity;
  spec.dim = dim;
  return spec;
}

OperatorSpec DenseSpec(const at::Tensor& matrix) {
  OperatorSpec spec;
  spec.kind = OperatorKind::kDense;
  spec.matrix = matrix;
  return spec;
}

// One Gaussian N(mu, S): the posterior is Gaussian, so its mean and the MAP coincide.
GaussianMixtureSpec SingleGaussianSpec() {
  GaussianMixtureSpec spec;
  spec.weights = at::ones({1}, at::kDouble);
  spec.means = at::tensor({0.3, -0.2}, at::kDouble).view({1, 2});
  spec.covariances = Matrix2(1.0, 0.3, 0.3, 0.8).view({1, 2, 2});
  return spec;
}

// The paper's 2-D study: the bimodal prior 1/2 N((-1, 0), 0.3^2 I) + 1/2 N((1, 0), 0.3^2 I),
// y = A x + 0.2 eta for a dense A (with its exact references) or for A = I.
class EvaluationTest : public ::testing::Test {
 protected:
  static constexpr double kDelta = 0.2;
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(
        prior_,
        GaussianMixture::Isotropic(
            {0.5, 0.5}, at::tensor({-1.0, 0.0, 1.0, 0.0}, at::kDouble).view({2, 2}), {0.3, 0.3}));
    ASSERT_OK_AND_ASSIGN(dense_, LinearOperator::Create(DenseSpec(a_)));
    ASSERT_OK_AND_ASSIGN(identity_, LinearOperator::Create(IdentitySpec(2)));
    ASSERT_OK_AND_ASSIGN(references_, BayesEstimators::Create(*dense_, *prior_, kDelta));
  }

  const at::Tensor a_ = Matrix2(0.9, 0.2, 0.1, 0.5);
  std::unique_ptr<GaussianMixture> prior_;
  std::unique_ptr<LinearOperator> dense_;
  std::unique_ptr<LinearOperator> identity_;
  std::unique_ptr<BayesEstimators> references_;
};
using DrawTestSetTest = EvaluationTest;
using DrawTestSetUnlessStoppedTest = EvaluationTest;
using EvaluateEstimateTest = EvaluationTest;
using EvaluateNetworkTest = EvaluationTest;

double MeanSquaredNorm(const at::Tensor& rows) { return rows.pow(2).sum(1).mean().item<double>(); }

bool Equal(const at::Tensor& a, const at::Tensor& b) { return at::equal(a, b); }

// A one-block iResNet of dimension 2 with g(x) = scale * x + bias (a single linear layer), so
// phi(x) = (1 + scale) x + bias and phi^-1(t) = (t - bias) / (1 + scale) exactly.
std::shared_ptr<const FrozenIResNet> AffineNetwork(double scale, const at::Tensor& bias) {
  IResNetConfig config;
  config.dim = 2;
  config.num_blocks = 1;
  config.layers_per_block = 1;
  config.hidden_width = 1;
  config.lipschitz_coeff = 0.9;
  auto net = IResNet::Create(config, at::kDouble);
  EXPECT_THAT(net, IsOk());
  if (!net.ok()) return nullptr;
  const at::Tensor unit = at::tensor({1.0, 0.0}, at::kDouble);
  std::vector<std::pair<std::string, at::Tensor>> state = {
      {"block0.layer0.weight", scale * at::eye(2, at::kDouble)},
      {"block0.layer0.bias", bias},
      {"block0.layer0.u", unit},
      {"block0.layer0.v", unit},
      // Positive and below the cap c = 0.9, so the normalisation leaves the weight as it is.
      {"block0.layer0.sigma", at::scalar_tensor(0.5, at::kDouble)},
  };
  EXPECT_THAT((*net)->LoadState(state), IsOk());
  (*net)->SetTraining(false);
  auto frozen = FrozenIResNet::Create(**net);
  EXPECT_THAT(frozen, IsOk());
  return frozen.ok() ? std::move(frozen).value() : nullptr;
}

// --- DrawTestSet ---------------------------------------------------------------------------

TEST_F(DrawTestSetTest, SameSeedSameDrawsAnotherSeedOthers) {
  TestSet a = DrawTestSet(*prior_, *dense_, 0.2, 100, Seeded(7));
  TestSet b = DrawTestSet(*prior_, *dense_, 0.2, 100, Seeded(7));
  TestSet c = DrawTestSet(*prior_, *dense_, 0.2, 100, Seeded(8));
  ASSERT_EQ(a.x.sizes(), (at::IntArrayRef{100, 2}));
  ASSERT_EQ(a.y.sizes(), (at::IntArrayRef{100, 2}));
  EXPECT_EQ(a.x.scalar_type(), at::kDouble);
  EXPECT_EQ(a.y.scalar_type(), at::kDouble);
  EXPECT_TRUE(Equal(a.x, b.x));
  EXPECT_TRUE(Equal(a.y, b.y));
  EXPECT_FALSE(Equal(a.x, c.x));
  EXPECT_FALSE(Equal(a.y, c.y));
  // Without references there are none.
  EXPECT_FALSE(a.pm.defined());
  EXPECT_FALSE(a.map.defined());
}

TEST_F(DrawTestSetTest, MeasurementsAreTheOperatorPlusNoiseOfTheGivenLevel) {
  // Noise-free: y = A x exactly (up to the matrix product's rounding).
  TestSet clean = DrawTestSet(*prior_, *dense_, 0.0, 50, Seeded(1));
  EXPECT_TRUE(at::allclose(clean.y, at::matmul(clean.x, a_.t()), 0.0, 1e-14));
  // With delta = 0.2 the noise (y - A x) / delta is standard normal: 2 x 20000 draws, so the
  // mean's standard error is 0.005 and the variance's 0.007; the bounds are about 6 of them.
  const double delta = 0.2;
  TestSet noisy = DrawTestSet(*prior_, *dense_, delta, 20000, Seeded(2));
  at::Tensor eta = (noisy.y - at::matmul(noisy.x, a_.t())) / delta;
  EXPECT_NEAR(eta.mean().item<double>(), 0.0, 0.03);
  EXPECT_NEAR(eta.pow(2).mean().item<double>(), 1.0, 0.04);
  // The signals come from the prior: half in each component, both near x_1 = +-1.
  const double right = (noisy.x.select(1, 0) > 0).to(at::kDouble).mean().item<double>();
  EXPECT_NEAR(right, 0.5, 0.03);
}

TEST_F(DrawTestSetTest, ReferencesAreTheExactEstimatorsOfEveryMeasurement) {
  TestSet test = DrawTestSet(*prior_, *dense_, 0.2, 40, Seeded(3), references_.get());
  ASSERT_TRUE(test.pm.defined());
  ASSERT_TRUE(test.map.defined());
  EXPECT_EQ(test.pm.sizes(), (at::IntArrayRef{40, 2}));
  EXPECT_EQ(test.map.sizes(), (at::IntArrayRef{40, 2}));
  EXPECT_TRUE(at::allclose(test.pm, references_->PosteriorMean(test.y), 0.0, 1e-12));
  EXPECT_TRUE(at::allclose(test.map, references_->Map(test.y).x, 0.0, 1e-9));
  // The same pairs as without references: the references draw nothing.
  TestSet plain = DrawTestSet(*prior_, *dense_, 0.2, 40, Seeded(3));
  EXPECT_TRUE(Equal(plain.x, test.x));
  EXPECT_TRUE(Equal(plain.y, test.y));
}

// What the server's DrawTestPairs does: pairs from the samples SplitDataset held out. Every
// drawn signal is a held-out sample, none is one the trainer saw.
TEST_F(DrawTestSetTest, PairsFromTheHeldOutPartNeverHoldATrainingSample) {
  const int64_t count = 500;
  at::Tensor samples = at::arange(2 * count, at::kDouble).view({count, 2});  // distinct rows
  TrainingSpec training;
  training.validation_size = 40;
  ASSERT_OK_AND_ASSIGN(auto split, SplitDataset(samples, training));
  ASSERT_OK_AND_ASSIGN(auto held_out, EmpiricalDataset::Create(split.second));
  ASSERT_OK_AND_ASSIGN(TestSet test,
                       DrawTestSetUnlessStopped(*held_out, *identity_, 0.1, 2000, Seeded(4), {}));
  auto row_of = [](const at::Tensor& x, int64_t i) {
    return static_cast<int64_t>(x[i][0].item<double>()) / 2;
  };
  std::set<int64_t> held, trained, drawn;
  for (int64_t i = 0; i < split.second.size(0); ++i) held.insert(row_of(split.second, i));
  for (int64_t i = 0; i < split.first->size(); ++i)
    trained.insert(row_of(split.first->samples(), i));
  ASSERT_EQ(held.size(), 40u);
  for (int64_t i = 0; i < test.x.size(0); ++i) drawn.insert(row_of(test.x, i));
  for (int64_t row : drawn) {
    EXPECT_EQ(held.count(row), 1u) << row;
    EXPECT_EQ(trained.count(row), 0u) << row;
  }
  // 2000 draws with replacement from 40 samples reach every one of them.
  EXPECT_EQ(drawn, held);
}

// --- DrawTestSetUnlessStopped ---------------------------------------------------------------

TEST_F(DrawTestSetUnlessStoppedTest, UpToOneBlockTheDrawsAreDrawTestSetsOwn) {
  for (int64_t count : {int64_t{1}, int64_t{300}, kTestSetBlockRows}) {
    TestSet expected = DrawTestSet(*prior_, *identity_, 0.1, count, Seeded(5));
    // One block: there is no "between blocks", so even a stopper that always says stop is not
    // consulted.
    int calls = 0;
    ASSERT_OK_AND_ASSIGN(TestSet test, DrawTestSetUnlessStopped(*prior_, *identity_, 0.1, count,
                                                                Seeded(5), [&calls] {
                                                                  ++calls;
                                                                  return true;
                                                                }));
    EXPECT_EQ(calls, 0) << count;
    EXPECT_TRUE(Equal(test.x, expected.x)) << count;
    EXPECT_TRUE(Equal(test.y, expected.y)) << count;
  }
}

TEST_F(DrawTestSetUnlessStoppedTest, ManyBlocksGiveEveryPairDeterministically) {
  const int64_t count = 2 * kTestSetBlockRows + 7;
  int calls = 0;
  ASSERT_OK_AND_ASSIGN(TestSet a,
                       DrawTestSetUnlessStopped(*prior_, *dense_, 0.0, count, Seeded(6), [&calls] {
                         ++calls;
                         return false;
                       }));
  EXPECT_EQ(calls, 2);  // between the three blocks
  ASSERT_EQ(a.x.sizes(), (at::IntArrayRef{count, 2}));
  ASSERT_EQ(a.y.sizes(), (at::IntArrayRef{count, 2}));
  EXPECT_FALSE(a.pm.defined());
  EXPECT_TRUE(at::allclose(a.y, dense_->Apply(a.x), 0.0, 1e-14));  // noise-free: y = A x
  // The blocks are fresh draws, not one block repeated.
  EXPECT_FALSE(Equal(a.x.slice(0, 0, 7), a.x.slice(0, kTestSetBlockRows, kTestSetBlockRows + 7)));
  ASSERT_OK_AND_ASSIGN(TestSet b, DrawTestSetUnlessStopped(*prior_, *dense_, 0.0, count, Seeded(6),
                                                           {}));  // no stopper at all
  EXPECT_TRUE(Equal(a.x, b.x));
  EXPECT_TRUE(Equal(a.y, b.y));
}

TEST_F(DrawTestSetUnlessStoppedTest, StopsWhenAskedWithCancelled) {
  const int64_t count = 4 * kTestSetBlockRows;
  // Asked after the first block and told to stop: no further block is drawn.
  int calls = 0;
  EXPECT_THAT(DrawTestSetUnlessStopped(*prior_, *identity_, 0.1, count, Seeded(7),
                                       [&calls] {
                                         ++calls;
                                         return true;
                                       }),
              StatusIs(absl::StatusCode::kCancelled, HasSubstr("stopped")));
  EXPECT_EQ(calls, 1);
  // Told to stop the second time it asks.
  calls = 0;
  EXPECT_THAT(DrawTestSetUnlessStopped(*prior_, *identity_, 0.1, count, Seeded(7),
                                       [&calls] { return ++calls == 2; }),
              StatusIs(absl::StatusCode::kCancelled));
  EXPECT_EQ(calls, 2);
}

// --- EvaluateEstimate -----------------------------------------------------------------------

TEST_F(EvaluateEstimateTest, ThePosteriorMeanScoresRatioOneAndZeroDistanceToItself) {
  TestSet test = DrawTestSet(*prior_, *dense_, 0.2, 200, Seeded(8), references_.get());
  EvaluationMetrics m = EvaluateEstimate(test.pm, test);
  EXPECT_DOUBLE_EQ(m.mse, MeanSquaredNorm(test.pm - test.x));
  EXPECT_DOUBLE_EQ(m.mse_ratio_to_pm, 1.0);
  EXPECT_DOUBLE_EQ(m.rms_to_pm, 0.0);
  EXPECT_DOUBLE_EQ(m.rms_to_map, std::sqrt(MeanSquaredNorm(test.pm - test.map)));
  // The bimodal posterior's mean and MAP differ (that is the point of the study).
  EXPECT_GT(m.rms_to_map, 1e-3);
  // An estimate has no inverse, so the network's quantities do not apply.
  EXPECT_TRUE(std::isnan(m.forward_error));
  EXPECT_TRUE(std::isnan(m.converged_fraction));
  EXPECT_TRUE(std::isnan(m.mean_iterations));
}

TEST_F(EvaluateEstimateTest, AKnownShiftGivesAKnownMseAndDistances) {
  // A hand-made test set: the metrics are sums over four rows.
  TestSet test;
  test.x = at::tensor({0.0, 0.0, 1.0, 2.0, -1.0, 3.0, 4.0, -2.0}, at::kDouble).view({4, 2});
  test.y = test.x.clone();
  test.pm = test.x + at::tensor({0.0, 1.0}, at::kDouble);   // ||pm - x||^2 = 1 in every row
  test.map = test.x - at::tensor({2.0, 0.0}, at::kDouble);  // ||map - x||^2 = 4
  // x_hat = x + (0.3, 0.4): ||x_hat - x||^2 = 0.25 in every row.
  const at::Tensor x_hat = test.x + at::tensor({0.3, 0.4}, at::kDouble);
  EvaluationMetrics m = EvaluateEstimate(x_hat, test);
  EXPECT_NEAR(m.mse, 0.25, 1e-15);
  EXPECT_NEAR(m.mse_ratio_to_pm, 0.25, 1e-15);
  EXPECT_NEAR(m.rms_to_pm, std::sqrt(0.3 * 0.3 + 0.6 * 0.6), 1e-15);   // (0.3, 0.4 - 1)
  EXPECT_NEAR(m.rms_to_map, std::sqrt(2.3 * 2.3 + 0.4 * 0.4), 1e-15);  // (0.3 + 2, 0.4)
  // One row off by (0, 2) instead: the mean over rows is (3 * 0.25 + 4) / 4.
  at::Tensor worse = x_hat.clone();
  worse[2] = test.x[2] + at::tensor({0.0, 2.0}, at::kDouble);
  EXPECT_NEAR(EvaluateEstimate(worse, test).mse, (3 * 0.25 + 4.0) / 4, 1e-15);
  // A float32 estimate is scored in float64 against the float64 truth.
  EXPECT_NEAR(EvaluateEstimate(x_hat.to(at::kFloat), test).mse, 0.25, 1e-6);
}

TEST_F(EvaluateEstimateTest, WithoutReferencesOnlyTheMseApplies) {
  TestSet test;
  test.x = at::zeros({3, 2}, at::kDouble);
  test.y = test.x.clone();
  EvaluationMetrics m = EvaluateEstimate(at::full({3, 2}, 0.5, at::kDouble), test);
  EXPECT_NEAR(m.mse, 0.5, 1e-15);
  EXPECT_TRUE(std::isnan(m.mse_ratio_to_pm));
  EXPECT_TRUE(std::isnan(m.rms_to_pm));
  EXPECT_TRUE(std::isnan(m.rms_to_map));
  // A MAP without a PM: the distance to the MAP applies, the ratio does not.
  test.map = at::ones({3, 2}, at::kDouble);
  m = EvaluateEstimate(at::full({3, 2}, 0.5, at::kDouble), test);
  EXPECT_TRUE(std::isnan(m.mse_ratio_to_pm));
  EXPECT_NEAR(m.rms_to_map, std::sqrt(0.5), 1e-15);
}

TEST_F(EvaluateEstimateTest, ForOneGaussianThePosteriorMeanAndTheMapScoreAlike) {
  ASSERT_OK_AND_ASSIGN(auto prior, GaussianMixture::Create(SingleGaussianSpec()));
  ASSERT_OK_AND_ASSIGN(auto references, BayesEstimators::Create(*dense_, *prior, kDelta));
  TestSet test = DrawTestSet(*prior, *dense_, kDelta, 300, Seeded(9), references.get());
  EvaluationMetrics map = EvaluateEstimate(test.map, test);
  EXPECT_NEAR(map.mse_ratio_to_pm, 1.0, 1e-8);
  EXPECT_NEAR(map.rms_to_pm, 0.0, 1e-6);
  EXPECT_NEAR(map.rms_to_map, 0.0, 1e-15);
  // The Wiener filter is that estimator too; the pseudo-inverse is worse than Bayes-optimal.
  EXPECT_NEAR(EvaluateEstimate(references->Wiener(test.y), test).mse_ratio_to_pm, 1.0, 1e-8);
  EXPECT_GT(EvaluateEstimate(references->PseudoInverse(test.y), test).mse_ratio_to_pm, 1.2);
}

// --- EvaluateNetwork ------------------------------------------------------------------------

TEST_F(EvaluateNetworkTest, AShiftNetworkHasTheShiftAsForwardErrorAndItsSquareAsMse) {
  // phi(x) = x + b (g = 0 x + b) on y = x: x_hat = y - b, so every error is b.
  const at::Tensor b = at::tensor({0.3, -0.4}, at::kDouble);
  auto network = AffineNetwork(0.0, b);
  ASSERT_NE(network, nullptr);
  TestSet test = DrawTestSet(*prior_, *identity_, 0.0, 64, Seeded(10));
  ASSERT_OK_AND_ASSIGN(EvaluationMetrics m,
                       EvaluateNetwork(*network, *identity_, TargetSpace::kMeasurement, test, {}));
  // float32 inputs: errors of about 1e-7 * |x|.
  EXPECT_NEAR(m.mse, 0.25, 1e-5);
  EXPECT_NEAR(m.forward_error, 0.5, 1e-5);
  EXPECT_DOUBLE_EQ(m.converged_fraction, 1.0);
  EXPECT_GE(m.mean_iterations, 1.0);
  EXPECT_TRUE(std::isnan(m.mse_ratio_to_pm));  // no references
  EXPECT_TRUE(std::isnan(m.rms_to_map));
}

TEST_F(EvaluateNetworkTest, InNormalSpaceTheTargetAndTheForwardErrorUseTheNormalOperator) {
  // phi(x) = 1.5 x + b, A dense, y = A x: x_hat = (A^T A x - b) / 1.5, and the forward error is
  // measured against A^T A x, not A x.
  const at::Tensor b = at::tensor({0.1, 0.2}, at::kDouble);
  auto network = AffineNetwork(0.5, b);
  ASSERT_NE(network, nullptr);
  TestSet test = DrawTestSet(*prior_, *dense_, 0.0, 64, Seeded(11));
  const at::Tensor normal = at::matmul(test.x, at::matmul(a_.t(), a_).t());  // rows A^T A x
  InverseOptions options;
  options.tolerance = 1e-7;
  ASSERT_OK_AND_ASSIGN(EvaluationMetrics m,
                       EvaluateNetwork(*network, *dense_, TargetSpace::kNormal, test, options));
  EXPECT_NEAR(m.mse, MeanSquaredNorm((normal - b) / 1.5 - test.x), 1e-5);
  EXPECT_NEAR(m.forward_error, std::sqrt(MeanSquaredNorm(1.5 * test.x + b - normal)), 1e-5);
  EXPECT_DOUBLE_EQ(m.converged_fraction, 1.0);
  // With references the ratio and distances apply to the network's inverse as to any estimate.
  test.pm = references_->PosteriorMean(test.y);
  test.map = references_->Map(test.y).x;
  ASSERT_OK_AND_ASSIGN(EvaluationMetrics with_references,
                       EvaluateNetwork(*network, *dense_, TargetSpace::kNormal, test, options));
  EvaluationMetrics of_estimate = EvaluateEstimate((normal - b) / 1.5, test);
  EXPECT_NEAR(with_references.mse_ratio_to_pm, of_estimate.mse_ratio_to_pm, 1e-4);
  EXPECT_NEAR(with_references.rms_to_pm, of_estimate.rms_to_pm, 1e-5);
  EXPECT_NEAR(with_references.rms_to_map, of_estimate.rms_to_map, 1e-5);
}

TEST_F(EvaluateNetworkTest, ConvergenceAndIterationsAreTheInversesOwn) {
  const at::Tensor b = at::tensor({0.1, 0.2}, at::kDouble);
  auto network = AffineNetwork(0.5, b);
  ASSERT_NE(network, nullptr);
  TestSet test = DrawTestSet(*prior_, *identity_, 0.1, 64, Seeded(12));
  // One fixed-point step cannot meet 1e-5 at contraction 0.5: nothing converges, one step each.
  InverseOptions one_step;
  one_step.max_iterations = 1;
  one_step.anderson = false;
  ASSERT_OK_AND_ASSIGN(
      EvaluationMetrics capped,
      EvaluateNetwork(*network, *identity_, TargetSpace::kMeasurement, test, one_step));
  EXPECT_DOUBLE_EQ(capped.converged_fraction, 0.0);
  EXPECT_DOUBLE_EQ(capped.mean_iterations, 1.0);
  // Uncapped, the means are those the inverse reports.
  InverseOptions plain;
  plain.anderson = false;
  ASSERT_OK_AND_ASSIGN(
      EvaluationMetrics m,
      EvaluateNetwork(*network, *identity_, TargetSpace::kMeasurement, test, plain));
  ASSERT_OK_AND_ASSIGN(InverseResult inverse, network->Inverse(test.y.to(at::kFloat), plain));
  EXPECT_DOUBLE_EQ(m.converged_fraction, inverse.converged.to(at::kDouble).mean().item<double>());
  EXPECT_DOUBLE_EQ(m.mean_iterations, inverse.iterations.to(at::kDouble).mean().item<double>());
  EXPECT_DOUBLE_EQ(m.converged_fraction, 1.0);
  // Plain iteration at contraction 0.5 needs more than a few steps to reach 1e-5.
  EXPECT_GT(m.mean_iterations, 5.0);
}

TEST_F(EvaluateNetworkTest, BadInverseOptionsAreInvalidArgumentNamingTheOption) {
  auto network = AffineNetwork(0.5, at::zeros({2}, at::kDouble));
  ASSERT_NE(network, nullptr);
  TestSet test = DrawTestSet(*prior_, *identity_, 0.1, 8, Seeded(13));
  InverseOptions options;
  options.tolerance = 0.0;
  EXPECT_THAT(EvaluateNetwork(*network, *identity_, TargetSpace::kMeasurement, test, options),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("tolerance")));
}

// phi(x) = 1.5 x: J = 1.5 I, so a divergence network's Laplace std is delta / sqrt(1.5) in every
// coordinate. On a single Gaussian prior the exact posterior std is the same for every y, so the
// ratios take two values (one per coordinate), each for half the entries.
TEST_F(EvaluateNetworkTest, StdRatiosCompareTheNetworksOwnStdWithTheExactOne) {
  ASSERT_OK_AND_ASSIGN(auto gaussian, GaussianMixture::Create(SingleGaussianSpec()));
  ASSERT_OK_AND_ASSIGN(auto references, BayesEstimators::Create(*dense_, *gaussian, kDelta));
  TestSet test = DrawTestSet(*gaussian, *dense_, kDelta, 64, Seeded(5), references.get());
  ASSERT_TRUE(test.posterior_std.defined());
  auto network = AffineNetwork(0.5, at::zeros({2}, at::kDouble));
  ASSERT_NE(network, nullptr);
  PosteriorSpreadSetup spread;
  spread.loss = LossKind::kDivergence;
  spread.target_space = TargetSpace::kNormal;
  spread.loss_weight = kDelta * kDelta;
  spread.noise_level = kDelta;
  ASSERT_OK_AND_ASSIGN(
      EvaluationMetrics m,
      EvaluateNetwork(*network, *dense_, TargetSpace::kNormal, test, InverseOptions(), &spread));
  const double network_std = kDelta / std::sqrt(1.5);
  const double r0 = network_std / test.posterior_std[0][0].item<double>();
  const double r1 = network_std / test.posterior_std[0][1].item<double>();
  ASSERT_GT(std::abs(r0 - r1), 1e-3);  // the quantiles below tell the coordinates apart
  EXPECT_NEAR(m.std_ratio_q10, std::min(r0, r1), 1e-6);
  EXPECT_NEAR(m.std_ratio_q90, std::max(r0, r1), 1e-6);
  EXPECT_NEAR(m.std_ratio_median, (r0 + r1) / 2, 1e-6);
  EXPECT_EQ(m.std_undefined_fraction, 0.0);

  // Not asked for: NaN. A loss without a posterior std: PosteriorSpreadMethodFor's refusal.
  ASSERT_OK_AND_ASSIGN(EvaluationMetrics plain, EvaluateNetwork(*network, *dense_,
                                                                TargetSpace::kNormal, test,
                                                                InverseOptions()));
  EXPECT_TRUE(std::isnan(plain.std_ratio_median));
  EXPECT_TRUE(std::isnan(plain.std_undefined_fraction));
  spread.loss = LossKind::kApproximation;
  EXPECT_THAT(
      EvaluateNetwork(*network, *dense_, TargetSpace::kNormal, test, InverseOptions(), &spread),
      StatusIs(absl::StatusCode::kFailedPrecondition));
}

}  // namespace
}  // namespace invnet
