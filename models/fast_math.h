#ifndef INVNET_MODELS_FAST_MATH_H_
#define INVNET_MODELS_FAST_MATH_H_

// Branch-free exp and expm1 that the compiler vectorises, for the inverse's activation loops
// (libm's scalar expm1 otherwise dominates an iResNet fixed-point iteration: 128 calls per
// block for width 64). Internal to invnet::models.
//
// Accuracy: exp to ~2 ulp over the clamped range; expm1 to ~2 ulp of max(|result|, eps) (a
// Taylor polynomial near 0, exp(x) - 1 elsewhere). Inputs below the clamp give exp = 0 (the true
// value underflows anyway); inputs above it saturate, so callers clamp to their useful range.

#include <cstdint>
#include <cstring>

namespace invnet::fast_math {

template <typename T>
struct Constants;

template <>
struct Constants<float> {
  using Bits = int32_t;
  static constexpr float kMin = -87.0f;
  static constexpr float kMax = 88.0f;
  static constexpr float kRound = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  static constexpr int kMantissa = 23;
  static constexpr int kBias = 127;
  static constexpr int kTerms = 8;   // Taylor terms of exp(r), |r| <= ln2 / 2
};

template <>
struct Constants<double> {
  using Bits = int64_t;
  static constexpr double kMin = -708.0;
  static constexpr double kMax = 709.0;
  static constexpr double kRound = 6755399441055744.0;  // 1.5 * 2^52
  static constexpr int kMantissa = 52;
  static constexpr int kBias = 1023;
  static constexpr int kTerms = 14;
};

// 1 / i! for i = 0 .. 14: the Taylor coefficients of exp.
constexpr double kInverseFactorial[15] = {
    1.0, 1.0, 0.5, 1.0 / 6, 1.0 / 24, 1.0 / 120, 1.0 / 720, 1.0 / 5040, 1.0 / 40320,
    1.0 / 362880, 1.0 / 3628800, 1.0 / 39916800, 1.0 / 479001600, 1.0 / 6227020800.0,
    1.0 / 87178291200.0};

// sum_{i=first}^{kTerms} r^(i - first) / i!, by Horner's rule (multiplications only, so the
// compiler keeps it in vector registers).
template <typename T, int first>
inline T TaylorTail(T r) {
  T p = T(kInverseFactorial[Constants<T>::kTerms]);
  for (int i = Constants<T>::kTerms - 1; i >= first; --i) p = p * r + T(kInverseFactorial[i]);
  return p;
}

template <typename T>
inline T Exp(T x) {
  using C = Constants<T>;
  using Bits = typename C::Bits;
  constexpr T kLog2e = T(1.4426950408889634);
  constexpr T kLn2Hi = T(0.693145751953125);         // exact in float; ln 2 split in two so
  constexpr T kLn2Lo = T(1.4286068203094172321e-06);  // k * ln2 is subtracted without error
  x = x < C::kMin ? C::kMin : (x > C::kMax ? C::kMax : x);
  // Adding 1.5 * 2^mantissa rounds x / ln 2 to an integer k, which then sits in the low bits of
  // the sum: reading them as an integer avoids a float-to-int conversion that SSE2/AVX2 lack
  // for 64-bit lanes.
  const T shifted = x * kLog2e + C::kRound;
  const T k = shifted - C::kRound;
  const T r = (x - k * kLn2Hi) - k * kLn2Lo;  // |r| <= ln2 / 2
  const T p = TaylorTail<T, 0>(r);
  Bits shifted_bits;
  Bits round_bits;
  const T round = C::kRound;
  std::memcpy(&shifted_bits, &shifted, sizeof(shifted));
  std::memcpy(&round_bits, &round, sizeof(round));
  const Bits bits = (shifted_bits - round_bits + C::kBias) << C::kMantissa;  // 2^k
  T scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return p * scale;
}

template <typename T>
inline T Expm1(T x) {
  // Near zero exp(x) - 1 cancels; there the series x (1 + x/2 + x^2/6 + ...) is accurate.
  const T series = x * TaylorTail<T, 1>(x);
  const T via_exp = Exp(x) - T(1);
  const T ax = x < T(0) ? -x : x;
  return ax < T(0.34657359) ? series : via_exp;
}

}  // namespace invnet::fast_math

#endif  // INVNET_MODELS_FAST_MATH_H_
