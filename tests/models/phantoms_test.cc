#include "models/phantoms.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace invnet {
namespace {

using ::invnet::testing::StatusIs;
using ::testing::HasSubstr;

at::Generator Gen(uint64_t seed) { return at::make_generator<at::CPUGeneratorImpl>(seed); }

// Row and column of the pixel whose centre is nearest (x, y) on a size x size image.
double At(const at::Tensor& image, double x, double y) {
  const int64_t size = image.size(0);
  const int64_t col = static_cast<int64_t>((x + 1.0) / 2.0 * size);
  const int64_t row = static_cast<int64_t>((1.0 - y) / 2.0 * size);
  return image[row][col].item<double>();
}

TEST(PhantomsTest, SheppLoganHasItsTabulatedValues) {
  at::Tensor image = SheppLogan(201);              // odd: a pixel centre at (0, 0)
  EXPECT_NEAR(At(image, 0.0, 0.0), 0.2, 1e-12);    // skull + brain
  EXPECT_NEAR(At(image, 0.0, 0.1), 0.3, 1e-12);    // + the small ellipse above the centre
  EXPECT_NEAR(At(image, 0.0, 0.35), 0.3, 1e-12);   // + the upper ellipse
  EXPECT_NEAR(At(image, 0.22, 0.0), 0.0, 1e-12);   // the right "ventricle": 0.2 - 0.2
  EXPECT_NEAR(At(image, 0.0, 0.9), 1.0, 1e-12);    // the skull, above the brain
  EXPECT_NEAR(At(image, 0.95, 0.95), 0.0, 1e-12);  // outside
  EXPECT_NEAR(image.min().item<double>(), 0.0, 1e-12);
  EXPECT_NEAR(image.max().item<double>(), 1.0, 1e-12);
  // The ventricles differ in size and tilt (+18 deg on the left, -18 on the right): near the
  // top of the left one's major axis is inside it, its mirror image outside the right one (a
  // left-right flip or a wrong angle sign shows).
  EXPECT_NEAR(At(image, -0.334, 0.351), 0.0, 1e-12);
  EXPECT_NEAR(At(image, 0.334, 0.351), 0.2, 1e-12);
}

TEST(PhantomsTest, RasterisedEllipseHasItsArea) {
  Ellipse e{0.5, 0.6, 0.3, 0.1, -0.2, 0.7};
  at::Tensor image = RasteriseEllipses({e}, 400);
  // Pixel area (2 / 400)^2 times the count approximates pi a b.
  const double area = image.sum().item<double>() / 0.5 * (2.0 / 400) * (2.0 / 400);
  EXPECT_NEAR(area, 3.141592653589793 * 0.6 * 0.3, 0.005);
  EXPECT_NEAR(At(image, 0.1, -0.2), 0.5, 1e-12);  // the centre
}

TEST(PhantomsTest, RandomPhantomsAreSeededVariedAndInRange) {
  RandomEllipsesSpec spec;
  spec.size = 32;
  ASSERT_OK_AND_ASSIGN(at::Tensor a, RandomEllipsePhantoms(spec, 20, Gen(7)));
  ASSERT_OK_AND_ASSIGN(at::Tensor b, RandomEllipsePhantoms(spec, 20, Gen(7)));
  ASSERT_OK_AND_ASSIGN(at::Tensor c, RandomEllipsePhantoms(spec, 20, Gen(8)));
  ASSERT_EQ(a.sizes(), (at::IntArrayRef{20, 32, 32}));
  EXPECT_TRUE(at::equal(a, b));
  EXPECT_FALSE(at::equal(a, c));
  EXPECT_GE(a.min().item<double>(), 0.0);
  EXPECT_LE(a.max().item<double>(), 1.0);
  // Every image has something in it, and they differ from one another.
  EXPECT_GT(a.flatten(1).amax(1).min().item<double>(), 0.0);
  EXPECT_GT((a[0] - a[1]).abs().max().item<double>(), 0.1);
  // Mean 6 ellipses of mean area pi 0.225^2 in the [-1, 1]^2 square cover a good part of it.
  const double covered = (a > 0).to(at::kDouble).mean().item<double>();
  EXPECT_GT(covered, 0.15);
  EXPECT_LT(covered, 0.9);
}

TEST(PhantomsTest, RejectsBadSpecsByName) {
  RandomEllipsesSpec spec;
  spec.size = 0;
  EXPECT_THAT(RandomEllipsePhantoms(spec, 1, Gen(1)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("phantoms.size")));
  spec = RandomEllipsesSpec();
  spec.mean_count = 0;
  EXPECT_THAT(RandomEllipsePhantoms(spec, 1, Gen(1)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("phantoms.mean_count")));
  EXPECT_THAT(RandomEllipsePhantoms(RandomEllipsesSpec(), -1, Gen(1)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("count")));
}

}  // namespace
}  // namespace invnet
