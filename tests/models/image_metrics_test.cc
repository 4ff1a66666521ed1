#include "models/image_metrics.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <cmath>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "models/phantoms.h"
#include "tests/testing/status_matchers.h"

namespace invnet {
namespace {

using ::invnet::testing::StatusIs;
using ::testing::HasSubstr;

at::Generator Gen(uint64_t seed) { return at::make_generator<at::CPUGeneratorImpl>(seed); }

TEST(ImageMetricsTest, PsnrOfAConstantOffsetIsItsFormula) {
  at::Tensor reference = SheppLogan(32).unsqueeze(0);
  ASSERT_OK_AND_ASSIGN(at::Tensor psnr, Psnr(reference + 0.1, reference, 1.0));
  EXPECT_NEAR(psnr.item<double>(), 20.0, 1e-9);  // 10 log10(1 / 0.01)
  ASSERT_OK_AND_ASSIGN(psnr, Psnr(reference + 0.1, reference, 2.0));
  EXPECT_NEAR(psnr.item<double>(), 20.0 + 20.0 * std::log10(2.0), 1e-9);
  ASSERT_OK_AND_ASSIGN(psnr, Psnr(reference, reference, 1.0));
  EXPECT_TRUE(std::isinf(psnr.item<double>()));
}

TEST(ImageMetricsTest, SsimOfConstantImagesIsTheLuminanceTerm) {
  // sigma = 0 everywhere: SSIM = (2ab + C1) / (a^2 + b^2 + C1).
  const double a = 0.3, b = 0.7, c1 = 1e-4;
  ASSERT_OK_AND_ASSIGN(at::Tensor ssim, Ssim(at::full({1, 16, 16}, a, at::kDouble),
                                             at::full({1, 16, 16}, b, at::kDouble), 1.0));
  EXPECT_NEAR(ssim.item<double>(), (2 * a * b + c1) / (a * a + b * b + c1), 1e-12);
}

TEST(ImageMetricsTest, SsimIsOneForEqualImagesSymmetricAndFallsWithNoise) {
  RandomEllipsesSpec spec;
  spec.size = 24;
  ASSERT_OK_AND_ASSIGN(at::Tensor images, RandomEllipsePhantoms(spec, 3, Gen(1)));
  at::Tensor noise = at::randn(images.sizes(), Gen(2), at::kDouble);
  ASSERT_OK_AND_ASSIGN(at::Tensor same, Ssim(images, images, 1.0));
  EXPECT_TRUE(at::allclose(same, at::ones({3}, at::kDouble), 1e-12, 1e-12));
  ASSERT_OK_AND_ASSIGN(at::Tensor low, Ssim(images + 0.05 * noise, images, 1.0));
  ASSERT_OK_AND_ASSIGN(at::Tensor high, Ssim(images + 0.2 * noise, images, 1.0));
  ASSERT_OK_AND_ASSIGN(at::Tensor swapped, Ssim(images, images + 0.2 * noise, 1.0));
  EXPECT_TRUE(at::allclose(high, swapped, 1e-12, 1e-12));
  EXPECT_TRUE((low < 1.0).all().item<bool>());
  EXPECT_TRUE((high < low).all().item<bool>());
  EXPECT_TRUE((high > -1.0).all().item<bool>());
  // A tiny image gets the largest odd window that fits.
  ASSERT_OK_AND_ASSIGN(at::Tensor tiny, Ssim(images.narrow(1, 0, 6).narrow(2, 0, 6),
                                             images.narrow(1, 0, 6).narrow(2, 0, 6), 1.0));
  EXPECT_NEAR(tiny[0].item<double>(), 1.0, 1e-12);
}

TEST(ImageMetricsTest, RejectsMismatchedImagesAndRanges) {
  at::Tensor a = at::zeros({2, 8, 8});
  EXPECT_THAT(Ssim(a, at::zeros({2, 8, 7}), 1.0),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("images")));
  EXPECT_THAT(Psnr(at::zeros({8, 8}), at::zeros({8, 8}), 1.0),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("images")));
  EXPECT_THAT(Psnr(a, a, 0.0), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("range")));
}

}  // namespace
}  // namespace invnet
