#include "models/conv_lipschitz.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace invnet {
namespace {

using ::invnet::testing::StatusIs;
using ::testing::HasSubstr;

// The layer as a dense [out*H*W, in*H*W] float64 matrix, built tap by tap from the definition
// y[o, i, j] = sum_{c,p,q} K[o, c, p, q] x[c, i + p - top, j + q - left] (torch's cross-correlation
// with `top` / `left` rows and columns of padding before the image), the index wrapping
// (circular) or the term dropped (zero) outside the image. Independent of the DFT under test.
at::Tensor DenseLayer(const at::Tensor& kernel, int64_t height, int64_t width,
                      ConvPadding padding) {
  const int64_t out = kernel.size(0), in = kernel.size(1), kh = kernel.size(2), kw = kernel.size(3);
  const int64_t top = (kh - 1) / 2, left = (kw - 1) / 2;
  at::Tensor matrix = at::zeros({out * height * width, in * height * width}, at::kDouble);
  at::Tensor kernel64 = kernel.to(at::kDouble);
  auto k = kernel64.accessor<double, 4>();
  auto m = matrix.accessor<double, 2>();
  for (int64_t o = 0; o < out; ++o) {
    for (int64_t c = 0; c < in; ++c) {
      for (int64_t i = 0; i < height; ++i) {
        for (int64_t j = 0; j < width; ++j) {
          for (int64_t p = 0; p < kh; ++p) {
            for (int64_t q = 0; q < kw; ++q) {
              int64_t r = i + p - top, s = j + q - left;
              if (padding == ConvPadding::kCircular) {
                r = ((r % height) + height) % height;
                s = ((s % width) + width) % width;
              } else if (r < 0 || r >= height || s < 0 || s >= width) {
                continue;
              }
              m[(o * height + i) * width + j][(c * height + r) * width + s] += k[o][c][p][q];
            }
          }
        }
      }
    }
  }
  return matrix;
}

double DenseNorm(const at::Tensor& kernel, int64_t height, int64_t width, ConvPadding padding) {
  return at::linalg_svdvals(DenseLayer(kernel, height, width, padding))[0].item<double>();
}

at::Tensor RandomKernel(int64_t out, int64_t in, int64_t kh, int64_t kw, uint64_t seed) {
  return at::randn({out, in, kh, kw}, at::make_generator<at::CPUGeneratorImpl>(seed), at::kDouble);
}

struct Shape {
  int64_t out, in, kh, kw, height, width;
};

// Odd, even, rectangular, 1x1 and grid-sized kernels, square and rectangular grids.
const Shape kShapes[] = {{3, 2, 3, 3, 8, 8}, {2, 3, 5, 5, 8, 8}, {2, 2, 2, 2, 8, 8},
                         {3, 3, 3, 1, 6, 8}, {4, 2, 1, 1, 8, 8}, {2, 2, 8, 8, 8, 8}};

TEST(ConvLipschitzTest, DenseReferenceIsTorchsPaddedConvolution) {
  // The reference's index convention is the one the network's layers will run: torch's
  // cross-correlation after circular / zero padding of (k - 1) / 2 before and the rest after.
  at::Tensor kernel = RandomKernel(3, 2, 3, 3, 1);
  at::Tensor x = at::randn({1, 2, 8, 8}, at::make_generator<at::CPUGeneratorImpl>(2), at::kDouble);
  for (ConvPadding padding : {ConvPadding::kCircular, ConvPadding::kZero}) {
    at::Tensor padded = padding == ConvPadding::kCircular
                            ? at::pad(x, {1, 1, 1, 1}, "circular")
                            : at::constant_pad_nd(x, {1, 1, 1, 1}, 0.0);
    at::Tensor torch_y = at::conv2d(padded, kernel).flatten();
    at::Tensor dense_y = at::mv(DenseLayer(kernel, 8, 8, padding), x.flatten());
    EXPECT_TRUE(at::allclose(torch_y, dense_y, 1e-12, 1e-12)) << ConvPaddingName(padding);
  }
}

TEST(ConvLipschitzTest, CircularSingularValuesAreTheDenseOperatorsExactly) {
  uint64_t seed = 10;
  for (const Shape& s : kShapes) {
    at::Tensor kernel = RandomKernel(s.out, s.in, s.kh, s.kw, ++seed);
    at::Tensor dft = std::get<0>(CircularConvSingularValues(kernel, s.height, s.width).sort());
    at::Tensor dense =
        at::linalg_svdvals(DenseLayer(kernel, s.height, s.width, ConvPadding::kCircular));
    dense = std::get<0>(dense.sort()).narrow(0, dense.size(0) - dft.size(0), dft.size(0));
    EXPECT_TRUE(at::allclose(dft, dense, 1e-9, 1e-9))
        << "kernel " << s.out << "x" << s.in << "x" << s.kh << "x" << s.kw;
  }
}

TEST(ConvLipschitzTest, CircularCertificateIsAnUpperBoundWithin1e9) {
  uint64_t seed = 20;
  for (const Shape& s : kShapes) {
    at::Tensor kernel = RandomKernel(s.out, s.in, s.kh, s.kw, ++seed);
    const double truth = DenseNorm(kernel, s.height, s.width, ConvPadding::kCircular);
    absl::StatusOr<double> bound =
        CertifiedConvNorm(kernel, s.height, s.width, ConvPadding::kCircular);
    ASSERT_TRUE(bound.ok()) << bound.status();
    EXPECT_GE(*bound, truth);
    EXPECT_LE(*bound, truth * (1 + 1e-9));
  }
}

TEST(ConvLipschitzTest, ZeroPaddingCertificateBoundsTheDenseNorm) {
  uint64_t seed = 30;
  for (const Shape& s : kShapes) {
    at::Tensor kernel = RandomKernel(s.out, s.in, s.kh, s.kw, ++seed);
    const double truth = DenseNorm(kernel, s.height, s.width, ConvPadding::kZero);
    absl::StatusOr<double> bound = CertifiedConvNorm(kernel, s.height, s.width, ConvPadding::kZero);
    ASSERT_TRUE(bound.ok()) << bound.status();
    EXPECT_GE(*bound, truth);
    // The enlarged grid's circular norm is the exact norm of a larger operator that contains
    // this one: close to it for a grid much larger than the kernel (here 8x8 against 3x3 or
    // 5x5 kernels: measured 1.00-1.10x; an 8x8 kernel on an 8x8 grid, the loose extreme, 1.33x).
    if (s.kh < s.height / 2) {
      EXPECT_LE(*bound, 1.25 * truth);
    }
  }
}

TEST(ConvLipschitzTest, AWrappingKernelIsBoundedAsTheCircularOperatorRunsIt) {
  // A 5x5 kernel on a 3x3 circular grid: taps wrap onto one another.
  at::Tensor kernel = RandomKernel(2, 2, 5, 5, 40);
  const double truth = DenseNorm(kernel, 3, 3, ConvPadding::kCircular);
  absl::StatusOr<double> bound = CertifiedConvNorm(kernel, 3, 3, ConvPadding::kCircular);
  ASSERT_TRUE(bound.ok());
  EXPECT_GE(*bound, truth);
  EXPECT_LE(*bound, truth * (1 + 1e-9));
}

TEST(ConvLipschitzTest, ScalingTheKernelScalesTheBound) {
  at::Tensor kernel = RandomKernel(3, 3, 3, 3, 50);
  absl::StatusOr<double> one = CertifiedConvNorm(kernel, 16, 16, ConvPadding::kZero);
  absl::StatusOr<double> three = CertifiedConvNorm(3.0 * kernel, 16, 16, ConvPadding::kZero);
  ASSERT_TRUE(one.ok() && three.ok());
  EXPECT_NEAR(*three, 3.0 * *one, 1e-9 * *three);
  // float32 kernels are certified as the float64 values they hold.
  absl::StatusOr<double> single =
      CertifiedConvNorm(kernel.to(at::kFloat), 16, 16, ConvPadding::kZero);
  ASSERT_TRUE(single.ok());
  EXPECT_NEAR(*single, *one, 1e-6 * *one);
}

TEST(ConvLipschitzTest, CertificationGridIsEnlargedByTheKernelForZeroPadding) {
  EXPECT_EQ(CertificationGrid(3, 5, 32, 16, ConvPadding::kCircular).height, 32);
  EXPECT_EQ(CertificationGrid(3, 5, 32, 16, ConvPadding::kZero).height, 34);
  EXPECT_EQ(CertificationGrid(3, 5, 32, 16, ConvPadding::kZero).width, 20);
}

TEST(ConvLipschitzTest, RejectsBadKernelsAndGridsByName) {
  EXPECT_THAT(CertifiedConvNorm(at::ones({3, 3}), 8, 8, ConvPadding::kZero),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("conv kernel")));
  EXPECT_THAT(CertifiedConvNorm(at::ones({1, 1, 3, 3}, at::kLong), 8, 8, ConvPadding::kZero),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("conv kernel")));
  EXPECT_THAT(CertifiedConvNorm(at::ones({1, 1, 3, 3}), 0, 8, ConvPadding::kZero),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("conv grid")));
  EXPECT_THAT(ParseConvPadding("reflect"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("padding")));
  ASSERT_OK_AND_ASSIGN(ConvPadding circular, ParseConvPadding("circular"));
  EXPECT_EQ(circular, ConvPadding::kCircular);
  ASSERT_OK_AND_ASSIGN(ConvPadding zero, ParseConvPadding(ConvPaddingName(ConvPadding::kZero)));
  EXPECT_EQ(zero, ConvPadding::kZero);
}

TEST(ConvLipschitzTest, PaddedConvIsTheDenseLayerAndItsAdjointTheTranspose) {
  // Odd kernels (the block's), square and rectangular grids, half-widths up to H - 1.
  const Shape shapes[] = {
      {3, 2, 3, 3, 8, 8}, {2, 3, 5, 3, 6, 7}, {2, 2, 1, 1, 4, 4}, {2, 2, 7, 7, 4, 4}};
  uint64_t seed = 60;
  for (const Shape& s : shapes) {
    at::Tensor kernel = RandomKernel(s.out, s.in, s.kh, s.kw, ++seed);
    at::Tensor x = at::randn({2, s.in, s.height, s.width},
                             at::make_generator<at::CPUGeneratorImpl>(++seed), at::kDouble);
    at::Tensor y = at::randn({2, s.out, s.height, s.width},
                             at::make_generator<at::CPUGeneratorImpl>(++seed), at::kDouble);
    for (ConvPadding padding : {ConvPadding::kCircular, ConvPadding::kZero}) {
      at::Tensor dense = DenseLayer(kernel, s.height, s.width, padding);
      EXPECT_TRUE(at::allclose(PaddedConv(x, kernel, padding).flatten(1),
                               at::matmul(x.flatten(1), dense.t()), 1e-12, 1e-12))
          << ConvPaddingName(padding) << " k " << s.kh;
      EXPECT_TRUE(at::allclose(PaddedConvAdjoint(y, kernel, padding).flatten(1),
                               at::matmul(y.flatten(1), dense), 1e-12, 1e-12))
          << ConvPaddingName(padding) << " k " << s.kh;
    }
  }
}

TEST(ConvLipschitzTest, PowerIterationOnThePaddedLayerReachesItsNormFromBelow) {
  at::Tensor kernel = RandomKernel(4, 3, 3, 3, 70);
  for (ConvPadding padding : {ConvPadding::kCircular, ConvPadding::kZero}) {
    const double truth = DenseNorm(kernel, 8, 8, padding);
    at::Tensor v = at::zeros({1, 3, 8, 8}, at::kDouble);
    const double few = ConvPowerIteration(kernel, padding, v, 3);
    EXPECT_LE(few, truth * (1 + 1e-12));
    // The vector persists: more steps from where the last call stopped converge.
    double estimate = few;
    for (int call = 0; call < 100; ++call) estimate = ConvPowerIteration(kernel, padding, v, 5);
    EXPECT_LE(estimate, truth * (1 + 1e-12)) << ConvPaddingName(padding);
    EXPECT_GE(estimate, truth * (1 - 1e-3)) << ConvPaddingName(padding);
    EXPECT_GE(estimate, few);
  }
}

}  // namespace
}  // namespace invnet
