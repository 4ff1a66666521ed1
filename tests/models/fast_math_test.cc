#include "models/fast_math.h"

#include <cmath>
#include <limits>

#include "gtest/gtest.h"

namespace invnet::fast_math {
namespace {

template <typename T>
void ExpectAccurate(T tolerance_ulps) {
  const T eps = std::numeric_limits<T>::epsilon();
  T worst_exp = 0;
  T worst_expm1 = 0;
  for (double x = -80; x <= 80; x += 0.00173) {
    const T v = static_cast<T>(x);
    const T exact = std::exp(v);
    worst_exp = std::max(worst_exp, std::abs(Exp(v) - exact) / exact);
    const T exact_m1 = std::expm1(v);
    // Relative to the result, except where it underflows to the scale of eps.
    worst_expm1 = std::max(
        worst_expm1, std::abs(Expm1(v) - exact_m1) / std::max(std::abs(exact_m1), eps));
  }
  EXPECT_LE(worst_exp, tolerance_ulps * eps);
  EXPECT_LE(worst_expm1, tolerance_ulps * eps);
}

TEST(FastMathTest, FloatIsWithinFewUlps) { ExpectAccurate<float>(4); }
TEST(FastMathTest, DoubleIsWithinFewUlps) { ExpectAccurate<double>(4); }

TEST(FastMathTest, TinyArgumentsKeepRelativeAccuracy) {
  for (double x : {1e-300, -1e-20, 1e-10, -3e-8}) {
    EXPECT_NEAR(Expm1(x), std::expm1(x), 4e-16 * std::abs(x)) << x;
  }
  EXPECT_EQ(Expm1(0.0), 0.0);
  EXPECT_EQ(Exp(0.0f), 1.0f);
}

TEST(FastMathTest, ExtremesSaturateInsteadOfOverflowing) {
  EXPECT_EQ(Exp(-1e6), Exp(-708.0));
  EXPECT_GT(Exp(-1e6), 0.0);
  EXPECT_TRUE(std::isfinite(Exp(1e6f)));
  EXPECT_NEAR(Expm1(-1e6), -1.0, 1e-15);
}

}  // namespace
}  // namespace invnet::fast_math
