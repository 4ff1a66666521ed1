#include "models/losses.h"

#include <cmath>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "models/iresnet.h"
#include "models/jacobian.h"
#include "tests/testing/gradients.h"
#include "tests/testing/status_matchers.h"

namespace invnet {
namespace {

using ::invnet::testing::ExpectParameterGradientsMatch;
using ::invnet::testing::StatusIs;
using ::testing::HasSubstr;

std::unique_ptr<LinearOperator> DenseOperator(const at::Tensor& matrix) {
  OperatorSpec spec;
  spec.kind = OperatorKind::kDense;
  spec.matrix = matrix;
  return LinearOperator::Create(spec).value();
}

std::unique_ptr<IResNet> SmallNetwork(int64_t dim, double c, uint64_t seed) {
  IResNetConfig config;
  config.dim = dim;
  config.num_blocks = 2;
  config.hidden_width = 12;
  config.lipschitz_coeff = c;
  config.seed = seed;
  auto net = IResNet::Create(config, at::kDouble).value();
  net->SetTraining(false);
  return net;
}

at::Generator Gen(uint64_t seed) { return at::make_generator<at::CPUGeneratorImpl>(seed); }

TEST(LossesTest, ValuesFollowTheirDefinitions) {
  auto net = SmallNetwork(3, 0.9, 1);
  auto op = DenseOperator(at::randn({3, 3}, at::kDouble) * 0.5);
  at::Tensor x = at::randn({16, 3}, at::kDouble);
  at::Tensor y = op->Apply(x) + 0.1 * at::randn({16, 3}, at::kDouble);
  LossOptions options;
  options.weight = 0.04;
  for (TargetSpace space : {TargetSpace::kMeasurement, TargetSpace::kNormal}) {
    options.target_space = space;
    at::Tensor t = space == TargetSpace::kNormal ? op->Adjoint(y) : y;
    double fit = (0.5 * (net->Forward(x) - t).pow(2).sum(1)).mean().item<double>();
    options.kind = LossKind::kApproximation;
    ASSERT_OK_AND_ASSIGN(LossValue a, ComputeLoss(*net, *op, x, y, options, Gen(0)));
    EXPECT_NEAR(a.objective.item<double>(), fit, 1e-12);
    options.kind = LossKind::kLogDet;
    ASSERT_OK_AND_ASSIGN(LossValue l, ComputeLoss(*net, *op, x, y, options, Gen(0)));
    double log_det = ExactLogDet(*net, x).value.mean().item<double>();
    EXPECT_NEAR(l.objective.item<double>(), fit - 0.04 * log_det, 1e-12);
    EXPECT_NEAR(l.regularizer, log_det, 1e-12);
    options.kind = LossKind::kDivergence;
    ASSERT_OK_AND_ASSIGN(LossValue d, ComputeLoss(*net, *op, x, y, options, Gen(0)));
    double div = ExactDivergence(*net, x).value.mean().item<double>();
    EXPECT_NEAR(d.objective.item<double>(), fit - 0.04 * div, 1e-12);
    options.kind = LossKind::kReconstruction;
    options.solver.tolerance = 1e-12;
    ASSERT_OK_AND_ASSIGN(LossValue r, ComputeLoss(*net, *op, x, y, options, Gen(0)));
    // Check against phi(x_hat) = t: the reported value is 1/2 ||x_hat - x||^2.
    EXPECT_GT(r.objective.item<double>(), 0.0);
    EXPECT_EQ(r.inverse_converged, 1.0);
  }
}

TEST(LossesTest, GradientsMatchFiniteDifferences) {
  auto op = DenseOperator(at::tensor({0.9, 0.2, 0.1, 0.5}, at::kDouble).view({2, 2}));
  at::Tensor x = at::randn({8, 2}, at::kDouble);
  at::Tensor y = op->Apply(x) + 0.2 * at::randn({8, 2}, at::kDouble);
  for (LossKind kind : {LossKind::kApproximation, LossKind::kLogDet, LossKind::kDivergence,
                        LossKind::kReconstruction}) {
    for (bool training : {false, true}) {
      auto net = SmallNetwork(2, 0.9, 2);
      net->SetTraining(training);
      net->PowerIterationStep();  // makes the inverse's view equal the training-mode weights
      LossOptions options;
      options.kind = kind;
      options.weight = 0.04;
      options.target_space = TargetSpace::kMeasurement;
      options.solver.tolerance = 1e-13;
      options.solver.max_iterations = 10000;
      ExpectParameterGradientsMatch(
          *net,
          [&](IResNet& n) { return ComputeLoss(n, *op, x, y, options, Gen(3)).value().objective; },
          kind == LossKind::kReconstruction ? 1e-4 : 1e-5);
      if (::testing::Test::HasFailure()) {
        ADD_FAILURE() << LossKindName(kind) << " training=" << training;
        return;
      }
    }
  }
}

// The gradient of 1/2 ||phi^-1(t) - x||^2 obtained by back-propagating through a fully unrolled,
// converged fixed-point solve.
std::vector<at::Tensor> UnrolledReconstructionGradient(IResNet& net, const at::Tensor& x,
                                                       const at::Tensor& t) {
  at::Tensor v = t;
  for (int64_t k = net.num_blocks() - 1; k >= 0; --k) {
    at::Tensor u = v;
    for (int it = 0; it < 200; ++it) u = v - net.Residual(k, u);
    v = u;
  }
  at::Tensor loss = (0.5 * (v - x).pow(2).sum(1)).mean();
  for (at::Tensor& p : net.Parameters()) p.mutable_grad() = at::Tensor();
  loss.backward();
  std::vector<at::Tensor> grads;
  for (const at::Tensor& p : net.Parameters()) grads.push_back(p.grad().clone());
  return grads;
}

TEST(LossesTest, ImplicitReconstructionGradientEqualsTheUnrolledOne) {
  for (int64_t exact_max_dim : {32, 0}) {  // exact J^T solve, then block-wise Neumann series
    auto net = SmallNetwork(4, 0.7, 4);
    auto op = DenseOperator(at::eye(4, at::kDouble) * 0.8 + 0.05 * at::randn({4, 4}, at::kDouble));
    at::Tensor x = at::randn({10, 4}, at::kDouble);
    at::Tensor y = op->Apply(x) + 0.1 * at::randn({10, 4}, at::kDouble);
    std::vector<at::Tensor> unrolled = UnrolledReconstructionGradient(*net, x, y);

    LossOptions options;
    options.kind = LossKind::kReconstruction;
    options.target_space = TargetSpace::kMeasurement;
    options.solver.tolerance = 1e-13;
    options.estimator.exact_max_dim = exact_max_dim;
    options.adjoint_tolerance = 1e-14;
    for (at::Tensor& p : net->Parameters()) p.mutable_grad() = at::Tensor();
    ASSERT_OK_AND_ASSIGN(LossValue loss, ComputeLoss(*net, *op, x, y, options, Gen(0)));
    loss.objective.backward();
    std::vector<at::Tensor> params = net->Parameters();
    for (size_t i = 0; i < params.size(); ++i) {
      EXPECT_TRUE(at::allclose(params[i].grad(), unrolled[i], 1e-7, 1e-10))
          << "parameter " << i << " exact_max_dim " << exact_max_dim << "\n"
          << (params[i].grad() - unrolled[i]).abs().max().item<double>();
    }
  }
}

// At phi(x) = A^T A x - delta^2 grad log p_X(x), which for a Gaussian prior N(mu, S) is the
// affine map (A^T A + delta^2 S^-1) x - delta^2 S^-1 mu, the expected gradient of the divergence
// loss (alpha = delta^2, normal space) in the parameters of an affine phi is zero (Stein).
TEST(LossesTest, SteinPointIsStationaryForTheDivergenceLoss) {
  const double delta = 0.3;
  at::Tensor a = at::tensor({0.85, 0.1, -0.05, 0.7}, at::kDouble).view({2, 2});
  at::Tensor s = at::tensor({0.5, 0.1, 0.1, 0.3}, at::kDouble).view({2, 2});
  at::Tensor mu = at::tensor({0.4, -0.2}, at::kDouble);
  at::Tensor s_inv = at::linalg_inv(s);
  at::Tensor m = at::matmul(a.t(), a) + delta * delta * s_inv;  // phi(x) = M x + b
  at::Tensor b = -delta * delta * at::matmul(s_inv, mu);
  auto op = DenseOperator(a);

  IResNetConfig config;
  config.dim = 2;
  config.num_blocks = 1;
  config.layers_per_block = 1;  // g(x) = W x + b, phi(x) = (I + W) x + b
  config.lipschitz_coeff = 0.9;
  auto stein_net = [&](const at::Tensor& w) {
    auto net = IResNet::Create(config, at::kDouble).value();
    double sigma = at::linalg_svdvals(w)[0].item<double>();
    EXPECT_LT(sigma, 0.9);
    EXPECT_OK(net->LoadState({{"block0.layer0.weight", w},
                              {"block0.layer0.bias", b},
                              {"block0.layer0.u", at::tensor({1.0, 0.0}, at::kDouble)},
                              {"block0.layer0.v", at::tensor({1.0, 0.0}, at::kDouble)},
                              {"block0.layer0.sigma", at::scalar_tensor(sigma, at::kDouble)}}));
    net->SetTraining(false);
    return net;
  };
  at::Tensor chol = at::linalg_cholesky(s);
  at::Generator gen = Gen(77);
  LossOptions options;
  options.kind = LossKind::kDivergence;
  options.target_space = TargetSpace::kNormal;
  options.weight = delta * delta;

  // Mean and standard error over independent batches of each gradient coordinate.
  auto gradient_stats = [&](IResNet& net) {
    std::vector<at::Tensor> samples;
    for (int batch = 0; batch < 400; ++batch) {
      at::Tensor x = mu + at::matmul(at::randn({500, 2}, gen, at::kDouble), chol.t());
      at::Tensor y = op->Apply(x) + delta * at::randn({500, 2}, gen, at::kDouble);
      for (at::Tensor& p : net.Parameters()) p.mutable_grad() = at::Tensor();
      ComputeLoss(net, *op, x, y, options, gen).value().objective.backward();
      std::vector<at::Tensor> flat;
      for (const at::Tensor& p : net.Parameters()) flat.push_back(p.grad().view({-1}));
      samples.push_back(at::cat(flat));
    }
    at::Tensor all = at::stack(samples);
    return std::make_pair(all.mean(0), all.std(0) / std::sqrt(400.0));
  };

  auto at_stein = stein_net(m - at::eye(2, at::kDouble));
  auto [mean, se] = gradient_stats(*at_stein);
  EXPECT_TRUE((mean.abs() <= 4.5 * se).all().item<bool>()) << mean << se;
  // Not vacuous: a slightly different affine map has a clearly non-zero expected gradient.
  auto off = stein_net(m - at::eye(2, at::kDouble) + 0.05 * at::eye(2, at::kDouble));
  auto [off_mean, off_se] = gradient_stats(*off);
  EXPECT_TRUE((off_mean.abs() > 10 * off_se).any().item<bool>()) << off_mean << off_se;
}

TEST(LossesTest, RejectsMismatchedShapes) {
  auto net = SmallNetwork(3, 0.9, 1);
  auto tall = DenseOperator(at::randn({5, 3}, at::kDouble));
  at::Tensor x = at::randn({4, 3}, at::kDouble);
  at::Tensor y = at::randn({4, 5}, at::kDouble);
  LossOptions options;
  options.target_space = TargetSpace::kMeasurement;
  EXPECT_THAT(ComputeLoss(*net, *tall, x, y, options, Gen(0)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("target_space")));
  options.target_space = TargetSpace::kNormal;
  EXPECT_OK(ComputeLoss(*net, *tall, x, y, options, Gen(0)));
  EXPECT_THAT(ComputeLoss(*net, *tall, x, at::randn({4, 3}, at::kDouble), options, Gen(0)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("y must be")));
}

}  // namespace
}  // namespace invnet

namespace invnet {
namespace {

// TrainingWarnings (problem.h): the two combinations the theory does not support, and nothing
// for the supported ones (A = I makes measurement space fine for the divergence loss).
TEST(TrainingWarningsTest, NameTheUnsupportedCombinationsOnly) {
  ProblemSpec problem;
  problem.op.kind = OperatorKind::kDense;
  problem.op.matrix = at::tensor({2.0, 0.0, 0.5, 1.0}, at::kDouble).view({2, 2});
  TrainingSpec t;
  t.loss = LossKind::kLogDet;
  t.target_space = TargetSpace::kNormal;
  std::vector<std::string> w = TrainingWarnings(problem, t);
  ASSERT_EQ(w.size(), 1u);
  EXPECT_NE(w[0].find("log-det loss in normal space"), std::string::npos) << w[0];
  t.target_space = TargetSpace::kMeasurement;
  EXPECT_TRUE(TrainingWarnings(problem, t).empty());
  t.loss = LossKind::kDivergence;
  w = TrainingWarnings(problem, t);
  ASSERT_EQ(w.size(), 1u);
  EXPECT_NE(w[0].find("divergence loss in measurement space with A != I"), std::string::npos);
  t.target_space = TargetSpace::kNormal;
  EXPECT_TRUE(TrainingWarnings(problem, t).empty());
  // A = I in each of its spellings: measurement space is normal space.
  t.target_space = TargetSpace::kMeasurement;
  problem.op.matrix = at::eye(2, at::kDouble);
  EXPECT_TRUE(TrainingWarnings(problem, t).empty());
  problem.op.kind = OperatorKind::kIdentity;
  EXPECT_TRUE(TrainingWarnings(problem, t).empty());
  problem.op.kind = OperatorKind::kConvolution;
  problem.op.kernel = {1.0};
  EXPECT_TRUE(TrainingWarnings(problem, t).empty());
  problem.op.kernel = {0.25, 0.5, 0.25};
  EXPECT_EQ(TrainingWarnings(problem, t).size(), 1u);
}

// An iResNet has det J_phi > 0, so no network approximates an A with det A < 0 in measurement
// space: every loss trained there is warned; normal space (A^T A) is fine.
TEST(TrainingWarningsTest, NameAnOrientationReversingOperatorInMeasurementSpace) {
  ProblemSpec problem;
  problem.op.kind = OperatorKind::kDense;
  problem.op.matrix = at::tensor({0.0, 1.0, 1.0, 0.0}, at::kDouble).view({2, 2});  // a swap
  TrainingSpec t;
  t.target_space = TargetSpace::kMeasurement;
  for (LossKind loss : {LossKind::kApproximation, LossKind::kReconstruction, LossKind::kLogDet}) {
    t.loss = loss;
    std::vector<std::string> w = TrainingWarnings(problem, t);
    ASSERT_EQ(w.size(), 1u);
    EXPECT_NE(w[0].find("det A < 0 in measurement space"), std::string::npos) << w[0];
  }
  t.loss = LossKind::kReconstruction;
  t.target_space = TargetSpace::kNormal;
  EXPECT_TRUE(TrainingWarnings(problem, t).empty());
  // det > 0, and a wide A (no determinant): nothing.
  t.target_space = TargetSpace::kMeasurement;
  problem.op.matrix = at::tensor({0.0, 1.0, -1.0, 0.0}, at::kDouble).view({2, 2});  // a rotation
  EXPECT_TRUE(TrainingWarnings(problem, t).empty());
  problem.op.matrix = at::tensor({1.0, 0.0, 0.0, 0.0, -1.0, 0.0}, at::kDouble).view({2, 3});
  EXPECT_TRUE(TrainingWarnings(problem, t).empty());
  // A convolution, through its matrix: the kernel [-1] negates every entry (det (-1)^3 < 0).
  problem.op.kind = OperatorKind::kConvolution;
  problem.op.dim = 3;
  problem.op.kernel = {-1.0};
  EXPECT_EQ(TrainingWarnings(problem, t).size(), 1u);
}

}  // namespace
}  // namespace invnet
