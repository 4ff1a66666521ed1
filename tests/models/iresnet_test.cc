#include "models/iresnet.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/optim/adam.h>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/networks.h"
#include "tests/testing/status_matchers.h"

namespace invnet {
namespace {

using ::invnet::testing::StatusIs;
using ::testing::HasSubstr;

IResNetConfig SmallConfig() {
  IResNetConfig config;
  config.dim = 3;
  config.num_blocks = 3;
  config.hidden_width = 16;
  config.layers_per_block = 3;
  config.lipschitz_coeff = 0.9;
  config.seed = 7;
  return config;
}

TEST(IResNetConfigTest, RejectsBadFieldsByName) {
  IResNetConfig config = SmallConfig();
  config.lipschitz_coeff = 1.0;
  EXPECT_THAT(ValidateIResNetConfig(config),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("lipschitz_coeff")));
  config = SmallConfig();
  config.dim = 0;
  EXPECT_THAT(ValidateIResNetConfig(config),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("dim")));
  config = SmallConfig();
  config.num_blocks = 65;
  EXPECT_THAT(IResNet::Create(config, at::kFloat),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("num_blocks")));
  config = SmallConfig();
  config.layers_per_block = 0;
  EXPECT_THAT(ValidateIResNetConfig(config),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("layers_per_block")));
  EXPECT_THAT(IResNet::Create(SmallConfig(), at::kInt),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(IResNetTest, SameSeedSameNetworkOtherSeedOtherNetwork) {
  auto a = IResNet::Create(SmallConfig(), at::kFloat).value();
  auto b = IResNet::Create(SmallConfig(), at::kFloat).value();
  IResNetConfig other = SmallConfig();
  other.seed = 8;
  auto c = IResNet::Create(other, at::kFloat).value();
  at::Tensor x = at::randn({5, 3});
  EXPECT_TRUE(at::equal(a->Forward(x), b->Forward(x)));
  EXPECT_FALSE(at::allclose(a->Forward(x), c->Forward(x)));
}

TEST(IResNetTest, FloatAndDoubleNetworksStartFromTheSamePoint) {
  auto f = IResNet::Create(SmallConfig(), at::kFloat).value();
  auto d = IResNet::Create(SmallConfig(), at::kDouble).value();
  at::Tensor x = at::randn({5, 3}, at::kDouble);
  EXPECT_TRUE(at::allclose(f->Forward(x.to(at::kFloat)).to(at::kDouble), d->Forward(x), 1e-5,
                           1e-5));
}

TEST(IResNetTest, SupportsLargeDimensions) {
  IResNetConfig config;
  config.dim = 1024;
  config.num_blocks = 2;
  config.hidden_width = 32;
  config.layers_per_block = 2;
  auto net = IResNet::Create(config, at::kFloat).value();
  EXPECT_EQ(net->Forward(at::randn({4, 1024})).sizes(), (std::vector<int64_t>{4, 1024}));
  EXPECT_LE(net->Certify().max_block_bound, 0.81 * (1 + 1e-6));
}

TEST(IResNetTest, EvaluationModeNeverChangesTheNetwork) {
  auto net = IResNet::Create(SmallConfig(), at::kFloat).value();
  net->SetTraining(false);
  at::Tensor x = at::randn({8, 3});
  at::Tensor first = net->Forward(x);
  std::vector<at::Tensor> before;
  for (auto& [name, t] : net->NamedState()) before.push_back(t.clone());
  for (int i = 0; i < 5; ++i) {
    net->PowerIterationStep();  // a no-op in evaluation mode
    net->Forward(x);
  }
  EXPECT_TRUE(at::equal(net->Forward(x), first));
  auto after = net->NamedState();
  for (size_t i = 0; i < before.size(); ++i) {
    EXPECT_TRUE(at::equal(before[i], after[i].second)) << after[i].first;
  }
}

TEST(IResNetTest, PowerIterationRunsInTrainingMode) {
  auto net = IResNet::Create(SmallConfig(), at::kFloat).value();
  net->SetTraining(true);
  // Perturb the weights so the stored u, v are no longer the top singular vectors.
  {
    at::NoGradGuard no_grad;
    for (at::Tensor& p : net->Parameters()) p.add_(at::randn_like(p) * 0.3);
  }
  at::Tensor u_before = net->NamedState()[2].second.clone();
  net->PowerIterationStep();
  EXPECT_FALSE(at::equal(u_before, net->NamedState()[2].second));
}

// Trains towards a map that needs every layer at its bound, with Adam and one power-iteration
// step per training step, as the trainer does.
void TrainWithAdam(IResNet& net, int steps, double lr) {
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(3);
  torch::optim::Adam adam(net.Parameters(), torch::optim::AdamOptions(lr));
  net.SetTraining(true);
  for (int s = 0; s < steps; ++s) {
    net.PowerIterationStep();
    at::Tensor x = at::randn({64, net.dim()}, gen, at::kFloat);
    at::Tensor target = x * 1.7 + 0.3 * at::sin(3 * x);
    at::Tensor loss = (net.Forward(x) - target).pow(2).sum(1).mean();
    adam.zero_grad();
    loss.backward();
    adam.step();
  }
  net.SetTraining(false);
}

TEST(IResNetTest, CertifiedBoundsStayAtTheCoefficientAfterTraining) {
  auto net = IResNet::Create(SmallConfig(), at::kFloat).value();
  TrainWithAdam(*net, 500, 1e-3);
  const double c = SmallConfig().lipschitz_coeff;
  const double cap = LayerLipschitzCap(SmallConfig(), 0);  // c^(1/3): the default split
  EXPECT_NEAR(cap, std::cbrt(c), 1e-15);
  LipschitzCertificate tracked = net->Certify();
  for (const auto& block : tracked.layer_sigmas) {
    for (double sigma : block) EXPECT_LE(sigma, cap * (1 + 1e-3));
  }
  net->CalibrateSpectralNorms();
  LipschitzCertificate exact = net->Certify();
  for (size_t k = 0; k < exact.layer_sigmas.size(); ++k) {
    double product = 1.0;
    for (double sigma : exact.layer_sigmas[k]) {
      EXPECT_LE(sigma, cap * (1 + 1e-6));
      product *= sigma;
    }
    EXPECT_DOUBLE_EQ(exact.block_bounds[k], product);
    EXPECT_LE(exact.block_bounds[k], c * (1 + 1e-6));
  }
  EXPECT_TRUE(exact.invertible());
}

TEST(IResNetTest, BiLipschitzInequalitiesHoldOnRandomPairs) {
  IResNetConfig config = SmallConfig();
  config.lipschitz_coeff = 0.97;
  auto net = invnet::testing::MakeSaturatedNetwork(config, at::kDouble);
  LipschitzCertificate cert = net->Certify();
  EXPECT_NEAR(cert.max_block_bound, 0.97, 1e-9);  // c bounds the block, not each layer
  at::Tensor a = at::randn({2000, 3}, at::kDouble) * 3;
  at::Tensor b = a + at::randn({2000, 3}, at::kDouble) * at::rand({2000, 1}, at::kDouble);
  at::Tensor ratio = (net->Forward(a) - net->Forward(b)).norm(2, 1) / (a - b).norm(2, 1);
  EXPECT_GE(ratio.min().item<double>(), cert.lower_lipschitz);
  EXPECT_LE(ratio.max().item<double>(), cert.upper_lipschitz);
  // Each block on its own is within (1 - L, 1 + L).
  for (int64_t k = 0; k < net->num_blocks(); ++k) {
    at::Tensor block_ratio = ((a + net->Residual(k, a)) - (b + net->Residual(k, b))).norm(2, 1) /
                             (a - b).norm(2, 1);
    EXPECT_GE(block_ratio.min().item<double>(), 1 - cert.block_bounds[k] - 1e-12);
    EXPECT_LE(block_ratio.max().item<double>(), 1 + cert.block_bounds[k] + 1e-12);
  }
}

TEST(IResNetTest, LinearizationMatchesFiniteDifferences) {
  for (Activation act : {Activation::kElu, Activation::kTanh, Activation::kSoftplus,
                         Activation::kLipSwish}) {
    IResNetConfig config = SmallConfig();
    config.activation = act;
    auto net = IResNet::Create(config, at::kDouble).value();
    net->SetTraining(false);
    at::Tensor x = at::randn({4, 3}, at::kDouble);
    for (int64_t k = 0; k < net->num_blocks(); ++k) {
      ResidualLinearization lin = net->LinearizeResidual(k, x);
      EXPECT_TRUE(at::allclose(lin.value(), net->Residual(k, x)));
      at::Tensor v = at::randn({4, 2, 3}, at::kDouble);  // two tangent rows per sample
      at::Tensor jv = lin.Apply(v);
      at::Tensor w = at::randn({4, 2, 3}, at::kDouble);
      at::Tensor jtw = lin.ApplyTranspose(w);
      const double h = 1e-6;
      for (int p = 0; p < 2; ++p) {
        at::Tensor dir = v.select(1, p);
        at::Tensor fd = (net->Residual(k, x + h * dir) - net->Residual(k, x - h * dir)) / (2 * h);
        EXPECT_TRUE(at::allclose(jv.select(1, p), fd, 1e-6, 1e-7)) << ActivationName(act);
        // <w, J v> = <J^T w, v>
        EXPECT_TRUE(at::allclose((w.select(1, p) * jv.select(1, p)).sum(1),
                                 (jtw.select(1, p) * dir).sum(1), 1e-12, 1e-12));
      }
    }
  }
}

TEST(IResNetTest, LoadStateRejectsBadStateAndKeepsTheNetwork) {
  auto net = IResNet::Create(SmallConfig(), at::kFloat).value();
  at::Tensor x = at::randn({2, 3});
  at::Tensor before = net->Forward(x);
  auto state = net->NamedState();
  // Deep copies: a vector of tensors copies handles, not data.
  auto clone = [&]() {
    std::vector<std::pair<std::string, at::Tensor>> copy;
    for (auto& [name, t] : state) copy.emplace_back(name, t.detach().clone());
    return copy;
  };
  const auto copy = clone();

  auto with_nan = clone();
  with_nan[0].second[0][0] = NAN;
  EXPECT_THAT(net->LoadState(with_nan),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("NaN")));
  auto wrong_shape = clone();
  wrong_shape[0].second = at::zeros({2, 2});
  EXPECT_THAT(net->LoadState(wrong_shape),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(copy[0].first)));
  auto zero_sigma = clone();
  zero_sigma[4].second = at::zeros({});
  EXPECT_THAT(net->LoadState(zero_sigma),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("positive")));
  auto missing = clone();
  missing.pop_back();
  EXPECT_THAT(net->LoadState(missing), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_TRUE(at::equal(net->Forward(x), before));
}


// models/README.md section 2: c bounds each block. A block whose layers all sit at their caps is
// at c (the product of the caps); the legacy split puts every layer at c and the block at c^L.
TEST(IResNetTest, SaturatedBlocksCertifyAtTheirSplitsBound) {
  IResNetConfig config = SmallConfig();
  config.lipschitz_coeff = 0.9;
  for (LipschitzSplit split :
       {LipschitzSplit::kGeometric, LipschitzSplit::kLastLayer, LipschitzSplit::kEveryLayer}) {
    config.lipschitz_split = split;
    auto net = invnet::testing::MakeSaturatedNetwork(config, at::kFloat);
    LipschitzCertificate cert = net->Certify();
    const double expected =
        split == LipschitzSplit::kEveryLayer ? std::pow(0.9, config.layers_per_block) : 0.9;
    for (double bound : cert.block_bounds) {
      EXPECT_NEAR(bound, expected, 1e-3) << LipschitzSplitName(split);
    }
    double product = 1.0;
    for (int64_t l = 0; l < config.layers_per_block; ++l) {
      product *= LayerLipschitzCap(config, l);
      EXPECT_NEAR(cert.layer_sigmas[0][l], LayerLipschitzCap(config, l), 1e-5);
    }
    EXPECT_NEAR(product, expected, 1e-12);
  }
}

TEST(IResNetTest, LipschitzSplitNamesRoundTrip) {
  for (LipschitzSplit split :
       {LipschitzSplit::kGeometric, LipschitzSplit::kLastLayer, LipschitzSplit::kEveryLayer}) {
    EXPECT_EQ(ParseLipschitzSplit(LipschitzSplitName(split)).value(), split);
  }
  EXPECT_THAT(ParseLipschitzSplit("per_layer").status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("lipschitz_split")));
}

// The certificate is an upper bound for every allowed width, also where the smaller side is past
// the SVD's limit (512): there the Gram matrix's eigenvalues give it, never a power iteration.
TEST(TightSpectralNormTest, IsATightUpperBoundOnEitherSideOfTheSvdLimit) {
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(21);
  for (auto shape : {std::pair<int64_t, int64_t>{300, 200}, {600, 700}, {800, 530}}) {
    at::Tensor w = at::randn({shape.first, shape.second}, gen, at::kDouble);
    // A spectrum with a close second singular value: where a power iteration is slowest.
    auto [u, s, vh] = at::linalg_svd(w, false);
    s[1] = s[0] * (1 - 1e-6);
    at::Tensor shaped = at::matmul(u * s.unsqueeze(0), vh);
    for (at::ScalarType dtype : {at::kDouble, at::kFloat}) {
      at::Tensor m = shaped.to(dtype);
      const double exact = at::linalg_svdvals(m.to(at::kDouble))[0].item<double>();
      const double bound = TightSpectralNorm(m);
      EXPECT_GE(bound, exact) << shape.first << "x" << shape.second;
      EXPECT_LE(bound, exact * (1 + 1e-9)) << shape.first << "x" << shape.second;
    }
  }
}

}  // namespace
}  // namespace invnet
