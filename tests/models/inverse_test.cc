#include "models/inverse.h"

#include <atomic>
#include <cmath>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "models/iresnet.h"
#include "tests/testing/networks.h"
#include "tests/testing/status_matchers.h"

namespace invnet {
namespace {

using ::invnet::testing::MakeSaturatedNetwork;
using ::invnet::testing::MakeWorstCaseLinearNetwork;
using ::invnet::testing::StatusIs;
using ::testing::HasSubstr;

constexpr double kFloatEps = 1.19e-7;

// The honest float32 round-trip tolerance (models/README.md section 2.1) for one block of
// contraction c.
double Float32Tolerance(double c) { return std::max(1e-5, 2 * kFloatEps / (1 - c)); }

at::Tensor RelativeError(const at::Tensor& estimate, const at::Tensor& truth) {
  return (estimate.to(at::kDouble) - truth.to(at::kDouble)).norm(2, 1) /
         truth.to(at::kDouble).norm(2, 1).clamp_min(1e-30);
}

class WorstCaseRoundTrip : public ::testing::TestWithParam<double> {};

TEST_P(WorstCaseRoundTrip, Float64ReachesTenDigitsAndTheBoundHolds) {
  const double c = GetParam();
  auto net = MakeWorstCaseLinearNetwork(8, 1, c, at::kDouble, 11);
  ASSERT_NE(net, nullptr);
  ASSERT_OK_AND_ASSIGN(auto frozen, FrozenIResNet::Create(*net));
  EXPECT_NEAR(frozen->block_lipschitz()[0], c, 1e-12);
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(21);
  at::Tensor x = at::randn({64, 8}, gen, at::kDouble);
  at::Tensor y = net->Forward(x);
  InverseOptions options;
  // Not 1e-11: at c = 0.97 the certified floor, the rounding bound amplified by 1 / (1 - c) and
  // its safety factor, is about 1e-11 itself for signals of norm 3, so one signal in ~30 draws
  // stops just above 1e-11 with a true error of 5e-12. 1e-10 is still ten digits.
  options.tolerance = 1e-10;
  options.max_iterations = 100000;
  options.anderson = false;  // the plain iteration, whose iteration count is predictable
  ASSERT_OK_AND_ASSIGN(InverseResult r, frozen->Inverse(y, options));
  at::Tensor err = (r.x - x).norm(2, 1);
  EXPECT_TRUE(r.converged.all().item<bool>());
  EXPECT_LE(err.max().item<double>(), 1e-10);
  // The reported bound really bounds the true error (up to float64 round-off).
  EXPECT_TRUE((err <= r.error_bound + 1e-13).all().item<bool>());
  EXPECT_LE(r.forward_residual.max().item<double>(), 1e-10);
  // Contraction exactly c in the worst direction: the plain iteration needs about
  // log(tol (1 - c) / (c ||g(v)||)) / log(c) steps; hundreds for c = 0.97.
  if (c >= 0.97) {
    EXPECT_GE(r.iterations.max().item<int64_t>(), 500);
  }
}

TEST_P(WorstCaseRoundTrip, Float32MeetsTheHonestTolerance) {
  const double c = GetParam();
  auto net = MakeWorstCaseLinearNetwork(8, 1, c, at::kFloat, 12);
  ASSERT_OK_AND_ASSIGN(auto frozen, FrozenIResNet::Create(*net));
  // Signals of norm 1 .. 2, so the absolute solver tolerance is a relative one too.
  at::Tensor x = at::randn({256, 8}, at::kDouble);
  x = x / x.norm(2, 1, true) * (1 + at::rand({256, 1}, at::kDouble));
  // y computed exactly, then rounded: the test measures the solver, not the rounding of phi.
  auto net64 = MakeWorstCaseLinearNetwork(8, 1, c, at::kDouble, 12);
  at::Tensor y = net64->Forward(x).to(at::kFloat);
  // The float64 solve of the rounded y, to 1e-13: the reference the float32 solve aims at.
  ASSERT_OK_AND_ASSIGN(auto frozen64, FrozenIResNet::Create(*net64));
  InverseOptions exact;
  exact.tolerance = 1e-13;
  exact.max_iterations = 100000;
  ASSERT_OK_AND_ASSIGN(InverseResult reference, frozen64->Inverse(y.to(at::kDouble), exact));
  at::Tensor x_exact = reference.x;

  const double tol = Float32Tolerance(c);
  InverseOptions options;
  options.tolerance = tol * 0.5;
  options.max_iterations = 100000;
  ASSERT_OK_AND_ASSIGN(InverseResult r, frozen->Inverse(y, options));
  EXPECT_EQ(r.x.scalar_type(), at::kFloat);
  at::Tensor rel = RelativeError(r.x, x_exact);
  EXPECT_LE(rel.max().item<double>(), tol) << "c = " << c;
  at::Tensor err = (r.x.to(at::kDouble) - x_exact).norm(2, 1);
  // Where the solver claims convergence, its bound holds up to float32 rounding of x.
  at::Tensor floor = kFloatEps * x_exact.norm(2, 1) / (1 - c);
  at::Tensor holds = (err <= r.error_bound + floor) | r.converged.logical_not();
  EXPECT_TRUE(holds.all().item<bool>());
}

INSTANTIATE_TEST_SUITE_P(Contractions, WorstCaseRoundTrip, ::testing::Values(0.5, 0.9, 0.97));

TEST(InverseTest, MultiBlockErrorBoundComposesThroughTheBlocks) {
  auto net = MakeWorstCaseLinearNetwork(6, 4, 0.9, at::kDouble, 13);
  ASSERT_OK_AND_ASSIGN(auto frozen, FrozenIResNet::Create(*net));
  at::Tensor x = at::randn({100, 6}, at::kDouble);
  at::Tensor y = net->Forward(x);
  for (double tol : {1e-3, 1e-6, 1e-9}) {
    InverseOptions options;
    options.tolerance = tol;
    options.max_iterations = 100000;
    ASSERT_OK_AND_ASSIGN(InverseResult r, frozen->Inverse(y, options));
    at::Tensor err = (r.x - x).norm(2, 1);
    EXPECT_TRUE((err <= r.error_bound + 1e-12).all().item<bool>()) << tol;
    // Not vacuous: the bound is within the composed worst case sum_j tol / (1-c)^j.
    double worst = 0;
    for (int j = 0; j < 4; ++j) worst += tol / std::pow(0.1, j);
    EXPECT_LE(r.error_bound.max().item<double>(), worst);
  }
}

TEST(InverseTest, NonlinearSaturatedNetworkRoundTrip) {
  IResNetConfig config;
  config.dim = 5;
  config.num_blocks = 4;
  config.hidden_width = 32;
  config.lipschitz_coeff = 0.97;
  for (Activation act : {Activation::kElu, Activation::kTanh, Activation::kSoftplus,
                         Activation::kLipSwish}) {
    config.activation = act;
    auto net = MakeSaturatedNetwork(config, at::kDouble);
    ASSERT_OK_AND_ASSIGN(auto frozen, FrozenIResNet::Create(*net));
    at::Tensor x = at::randn({50, 5}, at::kDouble) * 2;
    at::Tensor y = net->Forward(x);
    // The frozen forward equals the trainable network's.
    ASSERT_OK_AND_ASSIGN(at::Tensor y_frozen, frozen->Forward(x));
    EXPECT_TRUE(at::allclose(y_frozen, y, 1e-12, 1e-12)) << ActivationName(act);
    InverseOptions options;
    options.tolerance = 1e-11;
    ASSERT_OK_AND_ASSIGN(InverseResult r, frozen->Inverse(y, options));
    at::Tensor err = (r.x - x).norm(2, 1);
    EXPECT_LE(err.max().item<double>(), 1e-10) << ActivationName(act);
    EXPECT_TRUE((err <= r.error_bound + 1e-13).all().item<bool>());
  }
}

TEST(InverseTest, EachSampleStopsOnItsOwn) {
  auto net = MakeWorstCaseLinearNetwork(4, 1, 0.95, at::kDouble, 14);
  ASSERT_OK_AND_ASSIGN(auto frozen, FrozenIResNet::Create(*net));
  // g(x) = W x + b vanishes at x* = -W^-1 b, where u_0 = y = x* is already the solution.
  const auto state = net->NamedState();
  at::Tensor w = state[0].second.detach();
  at::Tensor b = state[1].second.detach();
  at::Tensor easy = -at::linalg_solve(w, b.unsqueeze(1)).squeeze(1);
  // Around x*, the initial error is proportional to the offset (g is affine), so a 100x smaller
  // offset along the same direction needs strictly fewer iterations.
  at::Tensor offset = at::randn({4}, at::kDouble) * 10;
  at::Tensor x = at::stack({easy, easy + offset, easy, easy + offset * 0.01});
  InverseOptions options;
  options.tolerance = 1e-10;
  options.max_iterations = 100000;
  options.anderson = false;
  ASSERT_OK_AND_ASSIGN(InverseResult r, frozen->Inverse(net->Forward(x), options));
  auto iters = r.iterations.accessor<int64_t, 1>();
  EXPECT_LE(iters[0], 2);
  EXPECT_LE(iters[2], 2);
  EXPECT_GT(iters[1], 100);
  EXPECT_GT(iters[1], iters[3]);  // a smaller initial error needs fewer iterations
  EXPECT_TRUE(r.converged.all().item<bool>());
}

TEST(InverseTest, DoublingTheIterationCapNeverIncreasesTheError) {
  // One block: the error of the plain iteration contracts in every eigendirection, so a larger
  // cap can only help.
  auto net = MakeWorstCaseLinearNetwork(6, 1, 0.97, at::kDouble, 15);
  ASSERT_OK_AND_ASSIGN(auto frozen, FrozenIResNet::Create(*net));
  at::Tensor x = at::randn({40, 6}, at::kDouble);
  at::Tensor y = net->Forward(x);
  at::Tensor previous;
  for (int64_t cap : {5, 10, 20, 40, 80, 160, 320}) {
    InverseOptions options;
    options.tolerance = 1e-14;
    options.max_iterations = cap;
    options.anderson = false;
    ASSERT_OK_AND_ASSIGN(InverseResult r, frozen->Inverse(y, options));
    EXPECT_FALSE(r.converged.any().item<bool>());
    EXPECT_EQ(r.iterations.max().item<int64_t>(), cap);
    at::Tensor err = (r.x - x).norm(2, 1);
    if (previous.defined()) {
      EXPECT_TRUE((err <= previous * (1 + 1e-9) + 1e-14).all().item<bool>()) << cap;
      EXPECT_LT(err.max().item<double>(), previous.max().item<double>()) << cap;
    }
    // Unconverged samples still carry a valid bound.
    EXPECT_TRUE((err <= r.error_bound + 1e-12).all().item<bool>());
    previous = err;
  }
}

TEST(InverseTest, UnconvergedMultiBlockSolvesKeepAValidBound) {
  // Across blocks, errors of earlier solves pass through later ones and can partly cancel, so
  // the error itself need not fall monotonically; the bound must hold at every cap.
  auto net = MakeWorstCaseLinearNetwork(6, 3, 0.97, at::kDouble, 15);
  ASSERT_OK_AND_ASSIGN(auto frozen, FrozenIResNet::Create(*net));
  at::Tensor x = at::randn({40, 6}, at::kDouble);
  at::Tensor y = net->Forward(x);
  double first_error = 0;
  double last_error = 0;
  for (int64_t cap : {5, 10, 20, 40, 80, 160, 320, 640}) {
    InverseOptions options;
    options.tolerance = 1e-14;
    options.max_iterations = cap;
    options.anderson = false;
    ASSERT_OK_AND_ASSIGN(InverseResult r, frozen->Inverse(y, options));
    at::Tensor err = (r.x - x).norm(2, 1);
    EXPECT_TRUE((err <= r.error_bound + 1e-12).all().item<bool>()) << cap;
    last_error = err.max().item<double>();
    if (cap == 5) first_error = last_error;
  }
  EXPECT_LT(last_error, first_error * 1e-3);
}

TEST(InverseTest, AndersonReachesTheSameAnswerInFewerIterations) {
  for (double c : {0.9, 0.97, 0.99}) {
    auto net = MakeWorstCaseLinearNetwork(8, 2, c, at::kDouble, 16);
    ASSERT_OK_AND_ASSIGN(auto frozen, FrozenIResNet::Create(*net));
    at::Tensor x = at::randn({32, 8}, at::kDouble);
    at::Tensor y = net->Forward(x);
    InverseOptions plain;
    plain.tolerance = 1e-8;  // for the whole inverse: block 2's share is 5e-9 (1 - c)
    plain.max_iterations = 100000;
    plain.anderson = false;
    InverseOptions anderson = plain;
    anderson.anderson = true;
    anderson.anderson_memory = 5;
    ASSERT_OK_AND_ASSIGN(InverseResult rp, frozen->Inverse(y, plain));
    ASSERT_OK_AND_ASSIGN(InverseResult ra, frozen->Inverse(y, anderson));
    EXPECT_TRUE(ra.converged.all().item<bool>());
    at::Tensor err = (ra.x - x).norm(2, 1);
    EXPECT_TRUE((err <= ra.error_bound + 1e-13).all().item<bool>());
    // The bound meets the tolerance of the whole inverse.
    EXPECT_LE(ra.error_bound.max().item<double>(), 1e-8);
    EXPECT_TRUE(((ra.x - rp.x).norm(2, 1) <= ra.error_bound + rp.error_bound + 1e-13)
                    .all()
                    .item<bool>());
    double plain_iters = rp.iterations.to(at::kDouble).mean().item<double>();
    double anderson_iters = ra.iterations.to(at::kDouble).mean().item<double>();
    EXPECT_LT(anderson_iters * 2, plain_iters) << "c = " << c;
  }
}

TEST(InverseTest, AndersonOnNonlinearBlocks) {
  IResNetConfig config;
  config.dim = 16;
  config.num_blocks = 3;
  config.hidden_width = 32;
  config.lipschitz_coeff = 0.99;
  config.layers_per_block = 2;
  auto net = MakeSaturatedNetwork(config, at::kDouble);
  ASSERT_OK_AND_ASSIGN(auto frozen, FrozenIResNet::Create(*net));
  at::Tensor x = at::randn({64, 16}, at::kDouble) * 3;
  at::Tensor y = net->Forward(x);
  InverseOptions options;
  // Three blocks at 0.99: the first block solved gets 1e-5 / (3 * 100^2) = 3e-10, near what
  // float64 can certify for signals of norm 15.
  options.tolerance = 1e-5;
  options.anderson = true;
  options.anderson_memory = 8;
  ASSERT_OK_AND_ASSIGN(InverseResult r, frozen->Inverse(y, options));
  EXPECT_TRUE(r.converged.all().item<bool>());
  EXPECT_LE((r.x - x).norm(2, 1).max().item<double>(), 1e-6);
}

TEST(InverseTest, LargeBatchesMatchSmallOnes) {
  IResNetConfig config;
  config.dim = 2;
  config.num_blocks = 4;
  config.hidden_width = 64;
  auto net = MakeSaturatedNetwork(config, at::kFloat);
  ASSERT_OK_AND_ASSIGN(auto frozen, FrozenIResNet::Create(*net));
  at::Tensor y = at::randn({3000, 2});
  InverseOptions options;
  ASSERT_OK_AND_ASSIGN(InverseResult all, frozen->Inverse(y, options));
  ASSERT_OK_AND_ASSIGN(InverseResult one, frozen->Inverse(y.narrow(0, 2500, 1), options));
  EXPECT_TRUE(at::equal(one.x, all.x.narrow(0, 2500, 1)));
  EXPECT_EQ(one.iterations[0].item<int64_t>(), all.iterations[2500].item<int64_t>());
}

TEST(InverseTest, StopsWhenAsked) {
  auto net = MakeWorstCaseLinearNetwork(4, 2, 0.99, at::kDouble, 17);
  ASSERT_OK_AND_ASSIGN(auto frozen, FrozenIResNet::Create(*net));
  std::atomic<int> polls{0};
  InverseOptions options;
  options.tolerance = 1e-14;
  options.max_iterations = 1000000;
  options.anderson = false;  // thousands of plain iterations: many chances to stop
  options.should_stop = [&]() { return ++polls > 10; };
  EXPECT_THAT(frozen->Inverse(at::randn({8, 4}, at::kDouble), options),
              StatusIs(absl::StatusCode::kCancelled));
  EXPECT_LT(polls.load(), 100);
}

TEST(InverseTest, StopsWhenAskedDuringAnOrdinarySolve) {
  // Samples that converge in a few rounds per block (fewer than the 32 between two polls): the
  // predicate is still polled, across blocks and between chunks, and stops the solve.
  IResNetConfig config;
  config.dim = 2;
  config.num_blocks = 4;
  config.hidden_width = 16;
  auto net = MakeSaturatedNetwork(config, at::kFloat);
  ASSERT_OK_AND_ASSIGN(auto frozen, FrozenIResNet::Create(*net));
  const at::Tensor y = 0.5 * at::randn({20000, 2});
  InverseOptions options;
  options.chunk_size = 64;
  ASSERT_OK_AND_ASSIGN(InverseResult full, frozen->Inverse(y, options));
  ASSERT_LT(full.iterations.max().item<int64_t>(), 4 * 32);
  std::atomic<int> polls{0};
  options.should_stop = [&]() { return ++polls > 3; };
  EXPECT_THAT(frozen->Inverse(y, options), StatusIs(absl::StatusCode::kCancelled));
  EXPECT_LT(polls.load(), 4 + at::get_num_threads());
  // Forward polls between chunks too.
  EXPECT_THAT(frozen->Forward(y, [] { return true; }), StatusIs(absl::StatusCode::kCancelled));
  // A predicate that never fires changes nothing.
  options.should_stop = [] { return false; };
  ASSERT_OK_AND_ASSIGN(InverseResult same, frozen->Inverse(y, options));
  EXPECT_TRUE(at::equal(same.x, full.x));
}

TEST(InverseTest, BadInputsAreRejectedByName) {
  auto net = MakeWorstCaseLinearNetwork(3, 1, 0.5, at::kFloat, 18);
  ASSERT_OK_AND_ASSIGN(auto frozen, FrozenIResNet::Create(*net));
  InverseOptions options;
  EXPECT_THAT(frozen->Inverse(at::randn({2, 4}), options),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("y:")));
  EXPECT_THAT(frozen->Inverse(at::randn({3}), options),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("rank")));
  EXPECT_THAT(frozen->Inverse(at::randn({0, 3}), options),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("empty")));
  at::Tensor nan = at::randn({4, 3});
  nan[2][1] = NAN;
  EXPECT_THAT(frozen->Inverse(nan, options),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("sample 2")));
  EXPECT_THAT(frozen->Inverse(at::ones({2, 3}, at::kInt), options),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("float")));
  EXPECT_THAT(frozen->Forward(at::randn({2, 2})),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("x:")));
  InverseOptions bad = options;
  bad.tolerance = 0;
  EXPECT_THAT(frozen->Inverse(at::randn({2, 3}), bad),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("tolerance")));
  bad = options;
  bad.max_iterations = 0;
  EXPECT_THAT(frozen->Inverse(at::randn({2, 3}), bad),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("max_iterations")));
  bad = options;
  bad.anderson = true;
  bad.anderson_memory = 50;
  EXPECT_THAT(frozen->Inverse(at::randn({2, 3}), bad),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("anderson_memory")));
}

TEST(InverseTest, RefusesNetworksThatAreNotInvertible) {
  auto net = MakeWorstCaseLinearNetwork(3, 2, 0.5, at::kDouble, 19);
  auto state = net->NamedState();
  {
    at::NoGradGuard no_grad;
    state[0].second.mul_(2.5);  // sigma(W) = 1.25, normalisation still thinks sigma = 0.5
  }
  EXPECT_THAT(FrozenIResNet::Create(*net),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("block 0")));
}


// Issue 12, section 3: the tolerance bounds the whole inverse and the reported bound is a true
// bound, rounding included. Saturated networks (every block at L = c) near 1, random y, float32
// and float64 inputs; the truth is a float64 solve of the same network to 1e-13 per block.
struct BoundCase {
  double c;
  int64_t blocks;
  Activation activation;
};

class CertifiedBound : public ::testing::TestWithParam<BoundCase> {};

TEST_P(CertifiedBound, TrueErrorNeverExceedsTheBoundNorTheToleranceWhenConverged) {
  const BoundCase param = GetParam();
  IResNetConfig config;
  config.dim = 6;
  config.num_blocks = param.blocks;
  config.hidden_width = 24;
  config.layers_per_block = 3;
  config.activation = param.activation;
  config.lipschitz_coeff = param.c;
  config.seed = 40 + param.blocks;
  for (at::ScalarType dtype : {at::kFloat, at::kDouble}) {
    auto net = MakeSaturatedNetwork(config, dtype);
    ASSERT_OK_AND_ASSIGN(auto frozen, FrozenIResNet::Create(*net));
    for (double bound : frozen->block_lipschitz()) EXPECT_NEAR(bound, param.c, 1e-3);
    at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(7);
    at::Tensor y = (at::randn({96, 6}, gen, at::kDouble) *
                    at::empty({96, 1}, at::kDouble).uniform_(0.1, 5.0, gen))
                       .to(dtype);
    InverseOptions exact;
    exact.per_block_tolerance = true;
    exact.tolerance = 1e-13;
    exact.max_iterations = 200000;
    ASSERT_OK_AND_ASSIGN(InverseResult truth, frozen->Inverse(y.to(at::kDouble), exact));
    int64_t converged = 0;
    for (double tol : {1e-3, 1e-5, 1e-7}) {
      InverseOptions options;
      options.tolerance = tol;
      options.max_iterations = 5000;
      ASSERT_OK_AND_ASSIGN(InverseResult r, frozen->Inverse(y, options));
      ASSERT_EQ(r.x.scalar_type(), dtype);
      at::Tensor err = (r.x.to(at::kDouble) - truth.x).norm(2, 1);
      // 1e-12: the reference's own error, far below every tolerance here.
      EXPECT_TRUE((err <= r.error_bound + 1e-12).all().item<bool>())
          << "c " << param.c << " tol " << tol << " worst excess "
          << (err - r.error_bound).max().item<double>();
      at::Tensor ok = r.converged.logical_not() | (err <= tol);
      EXPECT_TRUE(ok.all().item<bool>()) << "c " << param.c << " tol " << tol;
      EXPECT_TRUE((r.converged == (r.error_bound <= tol)).all().item<bool>());
      EXPECT_TRUE((r.error_bound > 0).all().item<bool>());  // never 0 for a real solve
      converged += r.converged.sum().item<int64_t>();
    }
    // Not vacuous: most solves do converge (all but float32's tightest, where the rounded
    // answer alone can exceed 1e-7 for signals of norm 5).
    EXPECT_GE(converged, 96 * 2) << "dtype " << dtype;
  }
}

INSTANTIATE_TEST_SUITE_P(
    NearOne, CertifiedBound,
    ::testing::Values(BoundCase{0.9, 4, Activation::kElu}, BoundCase{0.97, 3, Activation::kTanh},
                      BoundCase{0.99, 2, Activation::kSoftplus},
                      BoundCase{0.99, 3, Activation::kLipSwish}));

// Before the split a "converged" sample at 1e-5 could carry an error bound far above it: the
// tolerance applied to each block and the bounds compounded through the inverse.
TEST(CertifiedBoundTest, PerBlockToleranceIsLooserThanTheWholeInverse) {
  IResNetConfig config;
  config.dim = 4;
  config.num_blocks = 4;
  config.hidden_width = 16;
  config.lipschitz_coeff = 0.95;
  auto net = MakeSaturatedNetwork(config, at::kFloat);
  ASSERT_OK_AND_ASSIGN(auto frozen, FrozenIResNet::Create(*net));
  at::Tensor y = at::randn({64, 4});
  InverseOptions per_block;
  per_block.per_block_tolerance = true;
  ASSERT_OK_AND_ASSIGN(InverseResult loose, frozen->Inverse(y, per_block));
  ASSERT_OK_AND_ASSIGN(InverseResult whole, frozen->Inverse(y, InverseOptions()));
  EXPECT_GT(loose.error_bound.max().item<double>(), 1e-5);
  EXPECT_TRUE(whole.converged.all().item<bool>());
  EXPECT_LE(whole.error_bound.max().item<double>(), 1e-5);
}

}  // namespace
}  // namespace invnet
