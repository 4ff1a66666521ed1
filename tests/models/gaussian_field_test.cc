#include "models/gaussian_field.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "models/estimators.h"
#include "models/operators.h"
#include "models/priors.h"
#include "tests/testing/status_matchers.h"

namespace invnet {
namespace {

using ::invnet::testing::StatusIs;
using ::testing::HasSubstr;

at::Generator Gen(uint64_t seed) { return at::make_generator<at::CPUGeneratorImpl>(seed); }

GaussianFieldMixtureSpec TwoFields(int64_t height, int64_t width) {
  GaussianFieldMixtureSpec spec;
  spec.height = height;
  spec.width = width;
  spec.weights = {0.35, 0.65};
  spec.fields = {{/*mean=*/-0.5, /*stddev=*/0.4, /*correlation_length=*/1.5, /*smoothness=*/2.0},
                 {/*mean=*/0.8, /*stddev=*/0.7, /*correlation_length=*/3.0, /*smoothness=*/1.5}};
  return spec;
}

// The blur as a dense [n, n] matrix from its definition, tap by tap: (A x)_(i,j) =
// sum_pq K[p, q] x[(i + p - cp) mod H, (j + q - cq) mod W].
at::Tensor DenseBlur(const at::Tensor& kernel, int64_t h, int64_t w) {
  const int64_t cp = (kernel.size(0) - 1) / 2, cq = (kernel.size(1) - 1) / 2;
  at::Tensor matrix = at::zeros({h * w, h * w}, at::kDouble);
  for (int64_t i = 0; i < h; ++i) {
    for (int64_t j = 0; j < w; ++j) {
      for (int64_t p = 0; p < kernel.size(0); ++p) {
        for (int64_t q = 0; q < kernel.size(1); ++q) {
          const int64_t r = (((i + p - cp) % h) + h) % h, s = (((j + q - cq) % w) + w) % w;
          matrix[i * w + j][r * w + s] += kernel[p][q];
        }
      }
    }
  }
  return matrix;
}

TEST(GaussianFieldTest, PeriodicBlurIsTheTapByTapCrossCorrelation) {
  // An asymmetric, rectangular kernel: a flip or an off-by-one in the centre would show.
  at::Tensor kernel = at::rand({3, 2}, Gen(1), at::kDouble);
  at::Tensor transfer = PeriodicBlurTransfer(kernel, 5, 6);
  at::Tensor x = at::randn({4, 30}, Gen(2), at::kDouble);
  at::Tensor expected = at::matmul(x, DenseBlur(kernel, 5, 6).t());
  EXPECT_TRUE(at::allclose(ApplyPeriodicBlur(transfer, x), expected, 1e-12, 1e-12));
  EXPECT_EQ(ApplyPeriodicBlur(transfer, x.to(at::kFloat)).scalar_type(), at::kFloat);
}

TEST(GaussianFieldTest, GaussianKernelIsNormalisedAndSymmetric) {
  at::Tensor kernel = GaussianKernel2d(1.2, 5);
  EXPECT_NEAR(kernel.sum().item<double>(), 1.0, 1e-14);
  EXPECT_TRUE(at::allclose(kernel, kernel.t()));
  EXPECT_TRUE(at::allclose(kernel, kernel.flip({0})));
  EXPECT_GT(kernel[2][2].item<double>(), kernel[2][1].item<double>());
}

TEST(GaussianFieldTest, CovarianceIsCirculantWithThePixelVarianceAsked) {
  ASSERT_OK_AND_ASSIGN(auto prior, GaussianFieldMixture::Create(TwoFields(6, 8)));
  for (int64_t k = 0; k < 2; ++k) {
    at::Tensor cov = prior->DenseCovariance(k);
    const double stddev = prior->spec().fields[k].stddev;
    EXPECT_TRUE(at::allclose(cov, cov.t(), 1e-12, 1e-14));
    EXPECT_TRUE(at::allclose(at::diagonal(cov), at::full({48}, stddev * stddev, at::kDouble), 1e-12,
                             1e-12));
    EXPECT_GT(at::linalg_eigvalsh(cov).min().item<double>(), 0.0);
    // Stationary: the covariance of pixel (0, 0) with (0, 1) is that of (3, 5) with (3, 6).
    EXPECT_NEAR(cov[0][1].item<double>(), cov[3 * 8 + 5][3 * 8 + 6].item<double>(), 1e-12);
    // A longer correlation length correlates neighbours more.
  }
  EXPECT_LT(prior->DenseCovariance(0)[0][1].item<double>() / 0.16,
            prior->DenseCovariance(1)[0][1].item<double>() / 0.49);
}

TEST(GaussianFieldTest, SamplesHaveTheMixturesMeanAndCovariance) {
  GaussianFieldMixtureSpec spec = TwoFields(4, 4);
  ASSERT_OK_AND_ASSIGN(auto prior, GaussianFieldMixture::Create(spec));
  at::Tensor x = prior->Sample(40000, Gen(3));
  ASSERT_EQ(x.sizes(), (at::IntArrayRef{40000, 16}));
  // Mixture moments: mean sum w_k mu_k 1, covariance sum w_k (S_k + mu_k^2 11^T) - mean mean^T.
  double mean = 0;
  at::Tensor cov = at::zeros({16, 16}, at::kDouble);
  for (int64_t k = 0; k < 2; ++k) {
    const double mu = spec.fields[k].mean;
    mean += spec.weights[k] * mu;
    cov += spec.weights[k] * (prior->DenseCovariance(k) + mu * mu);
  }
  cov -= mean * mean;
  at::Tensor centred = x - x.mean(0);
  at::Tensor empirical = at::matmul(centred.t(), centred) / 39999.0;
  // Standard errors at 40,000 samples: about 0.004 for the mean, 0.005 for the covariances.
  EXPECT_LT((x.mean(0) - mean).abs().max().item<double>(), 0.025);
  EXPECT_LT((empirical - cov).abs().max().item<double>(), 0.03);
}

// The exact references of priors.h / estimators.h, built densely from the same prior and blur:
// the Fourier formulas must agree with them to rounding.
TEST(GaussianFieldTest, PosteriorIsTheDenseMixturePosterior) {
  const int64_t h = 6, w = 5, n = h * w;
  GaussianFieldMixtureSpec spec = TwoFields(h, w);
  ASSERT_OK_AND_ASSIGN(auto prior, GaussianFieldMixture::Create(spec));
  // Asymmetric: its transfer function is complex, so conj(a) is tested, not only |a|^2.
  at::Tensor kernel =
      GaussianKernel2d(0.9, 3).narrow(1, 0, 2) * at::rand({3, 2}, Gen(6), at::kDouble);
  kernel /= kernel.sum();
  at::Tensor transfer = PeriodicBlurTransfer(kernel, h, w);
  const double delta = 0.1;

  GaussianMixtureSpec dense_prior;
  dense_prior.weights = at::tensor(spec.weights, at::kDouble);
  dense_prior.means = at::stack({at::full({n}, spec.fields[0].mean, at::kDouble),
                                 at::full({n}, spec.fields[1].mean, at::kDouble)});
  at::Tensor covs = at::stack({prior->DenseCovariance(0), prior->DenseCovariance(1)});
  dense_prior.covariances = (0.5 * (covs + covs.transpose(1, 2))).contiguous();
  ASSERT_OK_AND_ASSIGN(auto mixture, GaussianMixture::Create(dense_prior));
  OperatorSpec op_spec;
  op_spec.kind = OperatorKind::kDense;
  op_spec.matrix = DenseBlur(kernel, h, w);
  ASSERT_OK_AND_ASSIGN(auto op, LinearOperator::Create(op_spec));
  ASSERT_OK_AND_ASSIGN(auto references, BayesEstimators::Create(*op, *mixture, delta));

  at::Tensor x = prior->Sample(64, Gen(4));
  at::Tensor y = ApplyPeriodicBlur(transfer, x) + delta * at::randn({64, n}, Gen(5), at::kDouble);
  ASSERT_OK_AND_ASSIGN(GaussianFieldPosterior posterior,
                       PeriodicBlurPosterior(*prior, transfer, delta, y));
  EXPECT_TRUE(at::allclose(posterior.mean, references->PosteriorMean(y), 1e-8, 1e-9));
  EXPECT_TRUE(at::allclose(posterior.stddev, references->PosteriorStd(y), 1e-7, 1e-9));
  EXPECT_TRUE(at::allclose(posterior.weights, references->PosteriorWeights(y), 1e-8, 1e-10));
  // Both components matter on this draw (otherwise the weights test little).
  EXPECT_GT(posterior.weights.select(1, 0).max().item<double>(), 0.9);
  EXPECT_GT(posterior.weights.select(1, 1).max().item<double>(), 0.9);
}

TEST(GaussianFieldTest, RejectsBadSpecsAndInputsByName) {
  GaussianFieldMixtureSpec spec = TwoFields(4, 4);
  spec.height = 0;
  EXPECT_THAT(GaussianFieldMixture::Create(spec),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("prior.height")));
  spec = TwoFields(4, 4);
  spec.weights = {0.5, 0.6};
  EXPECT_THAT(GaussianFieldMixture::Create(spec),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("sum to 1")));
  spec = TwoFields(4, 4);
  spec.weights = {1.0};
  EXPECT_THAT(GaussianFieldMixture::Create(spec),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("prior.weights")));
  spec = TwoFields(4, 4);
  spec.fields[1].correlation_length = 0;
  EXPECT_THAT(GaussianFieldMixture::Create(spec),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("prior.fields[1].correlation_length")));
  spec = TwoFields(4, 4);
  spec.fields[0].stddev = -1;
  EXPECT_THAT(GaussianFieldMixture::Create(spec),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("prior.fields[0].stddev")));

  ASSERT_OK_AND_ASSIGN(auto prior, GaussianFieldMixture::Create(TwoFields(4, 4)));
  at::Tensor transfer = PeriodicBlurTransfer(GaussianKernel2d(1.0, 3), 4, 4);
  at::Tensor y = at::zeros({2, 16}, at::kDouble);
  EXPECT_THAT(PeriodicBlurPosterior(*prior, transfer, 0.0, y),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("noise_level")));
  EXPECT_THAT(PeriodicBlurPosterior(*prior, transfer, 0.1, at::zeros({2, 15}, at::kDouble)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("measurements")));
  EXPECT_THAT(
      PeriodicBlurPosterior(*prior, PeriodicBlurTransfer(GaussianKernel2d(1.0, 3), 4, 5), 0.1, y),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("transfer")));
}

}  // namespace
}  // namespace invnet
