#include "models/jacobian.h"

#include <cmath>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include "gtest/gtest.h"
#include "models/inverse.h"
#include "models/iresnet.h"
#include "tests/testing/gradients.h"
#include "tests/testing/networks.h"

namespace invnet {
namespace {

using ::invnet::testing::ExpectParameterGradientsMatch;
using ::invnet::testing::MakeSaturatedNetwork;

IResNetConfig Config(int64_t dim, double c, int64_t layers) {
  IResNetConfig config;
  config.dim = dim;
  config.num_blocks = 3;
  config.hidden_width = 24;
  config.layers_per_block = layers;
  config.lipschitz_coeff = c;
  config.seed = 5;
  return config;
}

// Central finite-difference Jacobian of phi, [batch, n, n].
at::Tensor FiniteDifferenceJacobian(const IResNet& net, const at::Tensor& x) {
  const double h = 1e-6;
  std::vector<at::Tensor> columns;
  for (int64_t j = 0; j < net.dim(); ++j) {
    at::Tensor e = at::zeros_like(x);
    e.select(1, j).fill_(h);
    columns.push_back((net.Forward(x + e) - net.Forward(x - e)) / (2 * h));
  }
  return at::stack(columns, 2);
}

TEST(JacobianTest, ExactQuantitiesMatchFiniteDifferences) {
  auto net = MakeSaturatedNetwork(Config(4, 0.95, 3), at::kDouble);
  at::Tensor x = at::randn({6, 4}, at::kDouble);
  at::Tensor fd = FiniteDifferenceJacobian(*net, x);
  ForwardAndValue jac = ExactJacobian(*net, x);
  EXPECT_TRUE(at::allclose(jac.output, net->Forward(x)));
  EXPECT_TRUE(at::allclose(jac.value, fd, 1e-6, 1e-7));
  ForwardAndValue log_det = ExactLogDet(*net, x);
  EXPECT_TRUE(at::allclose(log_det.value, std::get<1>(at::linalg_slogdet(fd)), 1e-6, 1e-7));
  ForwardAndValue div = ExactDivergence(*net, x);
  EXPECT_TRUE(at::allclose(div.value, fd.diagonal(0, 1, 2).sum(-1), 1e-6, 1e-7));
  // A JVP is the Jacobian applied to the tangent.
  at::Tensor v = at::randn({6, 3, 4}, at::kDouble);  // three tangent rows per sample
  EXPECT_TRUE(at::allclose(JacobianVectorProduct(*net, x, v).value,
                           at::matmul(v, fd.transpose(1, 2)), 1e-6, 1e-7));
}

TEST(JacobianTest, AServedNetworksJacobianIsTheTrainableOnes) {
  for (Activation activation : {Activation::kElu, Activation::kTanh, Activation::kSoftplus,
                                Activation::kLipSwish}) {
    IResNetConfig config = Config(5, 0.95, 3);
    config.activation = activation;
    auto net = MakeSaturatedNetwork(config, at::kDouble);
    auto frozen = FrozenIResNet::Create(*net).value();
    at::Tensor x = at::randn({7, 5}, at::kDouble);
    at::Tensor served = ExactJacobian(*frozen, x.to(at::kFloat));  // float input, float64 result
    EXPECT_EQ(served.scalar_type(), at::kDouble);
    EXPECT_TRUE(at::allclose(served, ExactJacobian(*net, x.to(at::kFloat).to(at::kDouble)).value,
                             1e-12, 1e-12))
        << ActivationName(activation);
  }
}

TEST(JacobianTest, LogDetAndDivergenceGradientsMatchFiniteDifferences) {
  for (bool training : {false, true}) {
    auto net = IResNet::Create(Config(3, 0.9, 3), at::kDouble).value();
    net->SetTraining(training);  // training mode differentiates through the normalisation too
    at::Tensor x = at::randn({5, 3}, at::kDouble);
    ExpectParameterGradientsMatch(*net, [&](IResNet& n) { return ExactLogDet(n, x).value.sum(); });
    ExpectParameterGradientsMatch(*net,
                                  [&](IResNet& n) { return ExactDivergence(n, x).value.sum(); });
    ExpectParameterGradientsMatch(*net, [&](IResNet& n) {
      ForwardAndValue r = ExactDivergence(n, x);
      return (0.5 * r.output.pow(2).sum(1) - 0.3 * r.value).sum();  // the shape of the losses
    });
  }
}

struct SampleStats {
  double mean;
  double standard_error;
};

SampleStats Stats(const at::Tensor& samples) {
  const double n = static_cast<double>(samples.numel());
  return {samples.mean().item<double>(), samples.std().item<double>() / std::sqrt(n)};
}

TEST(JacobianTest, HutchinsonDivergenceIsUnbiased) {
  auto net = MakeSaturatedNetwork(Config(16, 0.97, 2), at::kDouble);
  at::Tensor point = at::randn({1, 16}, at::kDouble);
  const double exact = ExactDivergence(*net, point).value.item<double>();
  // 4000 independent single-probe estimates at the same point.
  at::Tensor x = point.expand({4000, 16}).contiguous();
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(21);
  SampleStats s = Stats(HutchinsonDivergence(*net, x, 1, gen).value);
  EXPECT_GT(s.standard_error, 0.0);
  EXPECT_LE(std::abs(s.mean - exact), 4 * s.standard_error)
      << "mean " << s.mean << " exact " << exact << " se " << s.standard_error;
}

TEST(JacobianTest, PowerSeriesLogDetIsUnbiasedForItsTruncation) {
  const int64_t terms = 12;
  auto net = MakeSaturatedNetwork(Config(16, 0.97, 2), at::kDouble);
  at::Tensor point = at::randn({1, 16}, at::kDouble);
  // The exact truncated series and the exact log det, from the explicit block Jacobians.
  double truncated = 0.0;
  double exact_log_det = 0.0;
  double tail_bound = 0.0;
  at::Tensor h = point;
  at::Tensor identity = at::eye(16, at::kDouble).unsqueeze(0);
  for (int64_t k = 0; k < net->num_blocks(); ++k) {
    ResidualLinearization lin = net->LinearizeResidual(k, h);
    at::Tensor jg = lin.Apply(identity)[0].t();  // rows J_g e_j -> J_g
    exact_log_det += std::get<1>(at::linalg_slogdet(at::eye(16, at::kDouble) + jg)).item<double>();
    at::Tensor power = at::eye(16, at::kDouble);
    for (int64_t t = 1; t <= terms; ++t) {
      power = at::matmul(jg, power);
      truncated += (t % 2 ? 1.0 : -1.0) / t * power.trace().item<double>();
    }
    // |tr(J^t)| <= n ||J||^t: the truncation error is at most n sum_{t > N} L^t / t.
    const double lip = at::linalg_matrix_norm(jg, 2).item<double>();
    for (int64_t t = terms + 1; t < 2000; ++t) tail_bound += 16 * std::pow(lip, t) / t;
    h = h + lin.value();
  }
  EXPECT_LE(std::abs(truncated - exact_log_det), tail_bound);
  EXPECT_NEAR(ExactLogDet(*net, point).value.item<double>(), exact_log_det, 1e-10);

  at::Tensor x = point.expand({4000, 16}).contiguous();
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(22);
  SampleStats s = Stats(PowerSeriesLogDet(*net, x, terms, 1, gen).value);
  EXPECT_LE(std::abs(s.mean - truncated), 4 * s.standard_error)
      << "mean " << s.mean << " truncated series " << truncated << " se " << s.standard_error;
}

TEST(JacobianTest, DispatchesByDimension) {
  auto net = MakeSaturatedNetwork(Config(8, 0.9, 2), at::kDouble);
  at::Tensor x = at::randn({3, 8}, at::kDouble);
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(1);
  JacobianEstimatorOptions options;
  options.exact_max_dim = 8;
  EXPECT_TRUE(at::equal(LogDet(*net, x, options, gen).value, ExactLogDet(*net, x).value));
  EXPECT_TRUE(at::equal(Divergence(*net, x, options, gen).value, ExactDivergence(*net, x).value));
  options.exact_max_dim = 4;
  EXPECT_FALSE(at::equal(Divergence(*net, x, options, gen).value, ExactDivergence(*net, x).value));
}

TEST(JacobianTest, ForwardOnlyPathBuildsNoGraph) {
  auto net = IResNet::Create(Config(3, 0.9, 3), at::kFloat).value();
  at::Tensor x = at::randn({4, 3});
  EXPECT_TRUE(ExactLogDet(*net, x).value.requires_grad());
  at::NoGradGuard no_grad;
  ForwardAndValue r = ExactLogDet(*net, x);
  EXPECT_FALSE(r.value.requires_grad());
  EXPECT_FALSE(r.output.requires_grad());
}

}  // namespace
}  // namespace invnet
