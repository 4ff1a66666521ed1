#include "models/jacobian.h"

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/csrc/autograd/autograd.h>

#include "gtest/gtest.h"
#include "models/inverse.h"
#include "models/iresnet.h"
#include "tests/testing/gradients.h"
#include "tests/testing/networks.h"

namespace invnet {
namespace {

using ::invnet::testing::ExpectParameterGradientsMatch;
using ::invnet::testing::MakeSaturatedNetwork;
using ::invnet::testing::MakeWorstCaseLinearNetwork;

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

// One scalar per call of a log-det estimator at `point`: the estimate averaged over `copies`
// copies of the point, and its gradients projected on fixed random directions, w.r.t. the input
// (`input_direction`, [1, n]) and w.r.t. the first parameter tensor (`weight_direction`).
struct LogDetSample {
  double value;
  double input_gradient;
  double weight_gradient;
};

using LogDetFunction = std::function<at::Tensor(const IResNet&, const at::Tensor&)>;

LogDetSample SampleLogDet(const IResNet& net, const at::Tensor& point, int64_t copies,
                          const at::Tensor& input_direction, const at::Tensor& weight_direction,
                          const LogDetFunction& log_det) {
  at::Tensor x = point.expand({copies, point.size(1)}).clone().requires_grad_(true);
  at::Tensor weight = net.Parameters()[0];
  at::Tensor value = log_det(net, x).sum() / static_cast<double>(copies);
  // allow_unused: a linear network's log det does not depend on x.
  auto grads = torch::autograd::grad({value}, {x, weight}, /*grad_outputs=*/{},
                                     /*retain_graph=*/c10::nullopt, /*create_graph=*/false,
                                     /*allow_unused=*/true);
  const double input_gradient =
      grads[0].defined() ? (grads[0].sum(0, true) * input_direction).sum().item<double>() : 0.0;
  return {value.item<double>(), input_gradient,
          (grads[1] * weight_direction).sum().item<double>()};
}

struct Directions {
  at::Tensor input;
  at::Tensor weight;
};

Directions RandomDirections(const IResNet& net, uint64_t seed) {
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  at::Tensor input = at::randn({1, net.dim()}, gen, at::kDouble);
  at::Tensor weight = at::randn(net.Parameters()[0].sizes(), gen, at::kDouble);
  return {input / input.norm(), weight / weight.norm()};
}

// Mean and standard error of each component over `calls` independent calls.
struct LogDetStats {
  SampleStats value, input_gradient, weight_gradient;
};

LogDetStats RepeatLogDet(const IResNet& net, const at::Tensor& point, int64_t calls,
                         int64_t copies, const Directions& d, const LogDetFunction& log_det) {
  std::vector<double> v, gi, gw;
  for (int64_t i = 0; i < calls; ++i) {
    LogDetSample s = SampleLogDet(net, point, copies, d.input, d.weight, log_det);
    v.push_back(s.value);
    gi.push_back(s.input_gradient);
    gw.push_back(s.weight_gradient);
  }
  auto stats = [](const std::vector<double>& values) {
    return Stats(at::tensor(values, at::kDouble));
  };
  return {stats(v), stats(gi), stats(gw)};
}

void ExpectUnbiased(const SampleStats& s, double exact, const std::string& what) {
  EXPECT_GT(s.standard_error, 0.0) << what;
  EXPECT_LE(std::abs(s.mean - exact), 4 * s.standard_error)
      << what << ": mean " << s.mean << " exact " << exact << " se " << s.standard_error;
}

// The Russian roulette against the exact log det (slogdet) and its autograd gradients, on
// networks whose layers sit at their caps (block bound 0.9), at n = 16 and n = 64.
TEST(JacobianTest, RussianRouletteLogDetAndGradientsAreUnbiased) {
  for (int64_t n : {16, 64}) {
    SCOPED_TRACE(n);
    IResNetConfig config = Config(n, 0.9, 2);
    config.hidden_width = 32;
    auto net = MakeSaturatedNetwork(config, at::kDouble);
    for (double bound : net->EstimatedBlockBounds()) EXPECT_NEAR(bound, 0.9, 1e-6);
    at::Tensor point = at::randn({1, n}, at::kDouble);
    Directions d = RandomDirections(*net, 7);
    LogDetSample exact = SampleLogDet(*net, point, 1, d.input, d.weight,
                                      [](const IResNet& net, const at::Tensor& x) {
                                        return ExactLogDet(net, x).value;
                                      });
    at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(31);
    LogDetStats s = RepeatLogDet(*net, point, 600, 8, d,
                                 [&](const IResNet& net, const at::Tensor& x) {
                                   return RussianRouletteLogDet(net, x, 2, 1, gen).value;
                                 });
    ExpectUnbiased(s.value, exact.value, "log det");
    ExpectUnbiased(s.input_gradient, exact.input_gradient, "input gradient");
    ExpectUnbiased(s.weight_gradient, exact.weight_gradient, "weight gradient");
  }
}

// A linear block with an eigenvalue exactly -L (L = 0.857, blur64's bound): in that direction
// the truncated series' gradient is sum_{t < N} L^t = (1 - L^N) / (1 - L), (1 - L^N) = 0.786
// times the truth for N = 10 (problem.h states it), and the Russian roulette's is unbiased.
TEST(JacobianTest, TruncatedSeriesGradientIsBiasedByTheStatedFactorAndRouletteIsNot) {
  const double lip = 0.857;
  const int64_t terms = 10;
  const int64_t n = 16;
  auto net = MakeWorstCaseLinearNetwork(n, 1, lip, at::kDouble, 3);
  ASSERT_NE(net, nullptr);
  at::Tensor weight = net->Parameters()[0];
  ASSERT_EQ(weight.sizes(), (at::IntArrayRef{n, n}));
  // The eigenvector of -L: W = L Q diag(-1, ...) Q^T, and the saved u is Q's first column.
  at::Tensor q0;
  for (const auto& [name, tensor] : net->NamedState()) {
    if (name == "block0.layer0.u") q0 = tensor.detach().clone();
  }
  ASSERT_TRUE(q0.defined());
  EXPECT_NEAR((q0 * at::matmul(weight.detach(), q0)).sum().item<double>(), -lip, 1e-9);
  Directions d{at::zeros({1, n}, at::kDouble), at::outer(q0, q0)};
  at::Tensor point = at::randn({1, n}, at::kDouble);
  LogDetSample exact = SampleLogDet(*net, point, 1, d.input, d.weight,
                                    [](const IResNet& net, const at::Tensor& x) {
                                      return ExactLogDet(net, x).value;
                                    });
  // d log det(I + W) / dW = (I + W)^-T, whose q0 q0^T component is 1 / (1 - L).
  EXPECT_NEAR(exact.weight_gradient, 1 / (1 - lip), 1e-9);

  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(41);
  LogDetStats truncated = RepeatLogDet(*net, point, 400, 8, d,
                                       [&](const IResNet& net, const at::Tensor& x) {
                                         return PowerSeriesLogDet(net, x, terms, 1, gen).value;
                                       });
  const double stated = (1 - std::pow(lip, terms)) * exact.weight_gradient;
  EXPECT_NEAR(stated / exact.weight_gradient, 0.786, 1e-3);
  ExpectUnbiased(truncated.weight_gradient, stated, "truncated series at its stated bias");
  EXPECT_GT(std::abs(truncated.weight_gradient.mean - exact.weight_gradient),
            10 * truncated.weight_gradient.standard_error)
      << "the truncated series should be measurably biased";

  LogDetStats roulette = RepeatLogDet(*net, point, 400, 8, d,
                                      [&](const IResNet& net, const at::Tensor& x) {
                                        return RussianRouletteLogDet(net, x, 2, 1, gen).value;
                                      });
  ExpectUnbiased(roulette.value, exact.value, "roulette log det");
  ExpectUnbiased(roulette.weight_gradient, exact.weight_gradient, "roulette weight gradient");
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
  // Above the threshold: the Russian roulette by default, the truncated series on request.
  EXPECT_EQ(JacobianEstimatorOptions().log_det, LogDetEstimator::kRussianRoulette);
  at::Generator a = at::make_generator<at::CPUGeneratorImpl>(9);
  at::Generator b = at::make_generator<at::CPUGeneratorImpl>(9);
  EXPECT_TRUE(at::equal(LogDet(*net, x, options, a).value,
                        RussianRouletteLogDet(*net, x, options.roulette_exact_terms, 1, b).value));
  options.log_det = LogDetEstimator::kTruncatedSeries;
  EXPECT_TRUE(at::equal(LogDet(*net, x, options, a).value,
                        PowerSeriesLogDet(*net, x, options.series_terms, 1, b).value));
}

TEST(JacobianTest, RouletteForwardOnlyPathBuildsNoGraph) {
  auto net = IResNet::Create(Config(3, 0.9, 3), at::kFloat).value();
  at::Tensor x = at::randn({4, 3});
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(2);
  EXPECT_TRUE(RussianRouletteLogDet(*net, x, 2, 1, gen).value.requires_grad());
  at::NoGradGuard no_grad;
  EXPECT_FALSE(RussianRouletteLogDet(*net, x, 2, 1, gen).value.requires_grad());
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
