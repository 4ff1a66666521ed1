#include "models/problem_family.h"

#include <cmath>
#include <set>

#include <ATen/ATen.h>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "models/operators.h"
#include "models/priors.h"
#include "models/seeds.h"
#include "models/trainer.h"
#include "tests/testing/status_matchers.h"

namespace invnet {
namespace {

using ::invnet::testing::StatusIs;
using ::testing::HasSubstr;

double ConditionNumber(const at::Tensor& a) {
  at::Tensor s = at::linalg_svdvals(a);
  return (s.max() / s.min()).item<double>();
}

TEST(ProblemFamilyTest, AMemberIsAFunctionOfItsSeed) {
  ASSERT_OK_AND_ASSIGN(Preset a, GetPreset("random2d-7", LossKind::kDivergence));
  ASSERT_OK_AND_ASSIGN(Preset b, GetPreset("random2d-7", LossKind::kApproximation));
  ASSERT_OK_AND_ASSIGN(Preset c, GetPreset("random2d-8", LossKind::kDivergence));
  EXPECT_EQ(a.name, "random2d-7");
  EXPECT_EQ(a.problem.preset, "random2d-7");
  EXPECT_TRUE(at::equal(a.problem.op.matrix, b.problem.op.matrix));
  EXPECT_TRUE(at::equal(a.problem.prior->covariances, b.problem.prior->covariances));
  EXPECT_EQ(a.problem.noise_level, b.problem.noise_level);
  EXPECT_FALSE(at::equal(a.problem.op.matrix, c.problem.op.matrix));
  EXPECT_NE(a.problem.noise_level, c.problem.noise_level);
}

// Every member is what problem_family.h promises, is accepted by the trainer, and trains with
// the service's defaults (the family has no defaults of its own).
void ExpectFamily(const std::string& family, int64_t n, double max_condition, double delta_lo,
                  double delta_hi, double spread_lo, double spread_hi) {
  std::set<int64_t> components;
  double worst_condition = 1;
  for (uint64_t seed = 0; seed < 40; ++seed) {
    const std::string name = FamilyMemberName(family, seed);
    ASSERT_OK_AND_ASSIGN(Preset p, GetPreset(name, LossKind::kLogDet));
    SCOPED_TRACE(name);
    ASSERT_EQ(p.problem.op.matrix.sizes(), (at::IntArrayRef{n, n}));
    const double condition = ConditionNumber(p.problem.op.matrix);
    EXPECT_LE(condition, max_condition * (1 + 1e-9));
    EXPECT_GT(at::linalg_det(p.problem.op.matrix).item<double>(), 0);
    worst_condition = std::max(worst_condition, condition);
    EXPECT_GE(p.problem.noise_level, delta_lo);
    EXPECT_LE(p.problem.noise_level, delta_hi);
    const GaussianMixtureSpec& prior = *p.problem.prior;
    const int64_t k = prior.weights.size(0);
    components.insert(k);
    EXPECT_NEAR(prior.weights.sum().item<double>(), 1.0, 1e-12);
    EXPECT_GE((prior.weights.min() / prior.weights.max()).item<double>(), 0.2 - 1e-12);
    at::Tensor eigenvalues = at::linalg_eigvalsh(prior.covariances);
    EXPECT_GE(eigenvalues.min().item<double>(), spread_lo * spread_lo * (1 - 1e-9));
    EXPECT_LE(eigenvalues.max().item<double>(), spread_hi * spread_hi * (1 + 1e-9));
    EXPECT_OK(GaussianMixture::Create(prior).status());
    EXPECT_OK(LinearOperator::Create(p.problem.op).status());

    IResNetConfig expected_architecture;
    expected_architecture.dim = n;
    EXPECT_EQ(p.architecture.num_blocks, expected_architecture.num_blocks);
    EXPECT_EQ(p.architecture.hidden_width, expected_architecture.hidden_width);
    EXPECT_EQ(p.architecture.lipschitz_coeff, expected_architecture.lipschitz_coeff);
    EXPECT_EQ(p.architecture.lipschitz_split, expected_architecture.lipschitz_split);
    EXPECT_EQ(p.training.learning_rate, TrainingSpec().learning_rate);
    EXPECT_EQ(p.training.steps, DefaultTrainingSteps(n));  // 3000 at n = 2, 6000 at n = 8
    EXPECT_EQ(p.training.target_space, TargetSpace::kMeasurement);
    TrainingRequest request;
    request.problem = p.problem;
    request.architecture = p.architecture;
    request.training = p.training;
    EXPECT_OK(ValidateTrainingRequest(request));
    EXPECT_OK(ValidateProblemMagnitudes(p.problem, p.training, at::Tensor()));
  }
  // Both mixture sizes occur, and the conditioning spreads over its range.
  EXPECT_EQ(components, (std::set<int64_t>{2, 3}));
  EXPECT_GT(worst_condition, 0.6 * max_condition);
}

TEST(ProblemFamilyTest, Random2dMembersMatchTheirDescription) {
  ExpectFamily("random2d", 2, 5.0, 0.1, 0.3, 0.15, 0.5);
}

TEST(ProblemFamilyTest, Random8MembersMatchTheirDescription) {
  ExpectFamily("random8", 8, 10.0, 0.05, 0.2, 0.1, 0.4);
}

TEST(ProblemFamilyTest, MalformedNamesAreNotFound) {
  for (const char* name : {"random2d-", "random2d-x", "random2d--1", "random2d-1e3", "random9-1",
                           "random2d-+3", "random2d-99999999999999999999", "-3"}) {
    EXPECT_THAT(GetPreset(name, LossKind::kApproximation),
                StatusIs(absl::StatusCode::kNotFound, HasSubstr("random2d"))) << name;
  }
  EXPECT_THAT(GetPreset("nope", LossKind::kApproximation),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("FAMILY-SEED")));
}

TEST(SeedStreamTest, StreamsOfOneSeedAndOfNeighbouringSeedsAreDistinct) {
  std::set<uint64_t> seen;
  for (uint64_t seed = 0; seed < 100; ++seed) {
    for (SeedStream stream : {SeedStream::kTraining, SeedStream::kValidation, SeedStream::kTest,
                              SeedStream::kDatasetSplit}) {
      seen.insert(StreamSeed(seed, stream));
    }
  }
  EXPECT_EQ(seen.size(), 400u);
  EXPECT_EQ(StreamSeed(42, SeedStream::kTraining), 42u);  // old models reproduce
}

at::Tensor DistinctRows(int64_t count) {
  return at::arange(2 * count, at::kDouble).view({count, 2});
}

// Which rows of DistinctRows a split's samples are.
std::set<int64_t> RowsOf(const at::Tensor& samples) {
  std::set<int64_t> rows;
  for (int64_t i = 0; i < samples.size(0); ++i) {
    rows.insert(static_cast<int64_t>(samples[i][0].item<double>()) / 2);
  }
  return rows;
}

TEST(SplitDatasetTest, HoldsOutASeededPermutationTheSameForEveryTrainingSeed) {
  TrainingSpec spec;
  spec.validation_size = 50;
  ASSERT_OK_AND_ASSIGN(auto split, SplitDataset(DistinctRows(1000), spec));
  const std::set<int64_t> held = RowsOf(split.second);
  EXPECT_EQ(held.size(), 50u);
  EXPECT_EQ(split.first->size(), 950);
  std::set<int64_t> trained = RowsOf(split.first->samples());
  EXPECT_EQ(trained.size(), 950u);
  for (int64_t row : held) EXPECT_EQ(trained.count(row), 0u) << row;
  // Not the tail, nor any contiguous block.
  EXPECT_LT(*held.begin(), 900);
  EXPECT_GT(*held.rbegin() - *held.begin(), 100);
  spec.seed = 12345;
  ASSERT_OK_AND_ASSIGN(auto other_seed, SplitDataset(DistinctRows(1000), spec));
  EXPECT_EQ(RowsOf(other_seed.second), held);
}

TEST(SplitDatasetTest, OldCheckpointsKeepTheirTailAndSmallDatasetsAFifth) {
  TrainingSpec spec;
  spec.validation_size = 50;
  spec.holdout_split = HoldoutSplit::kTail;
  ASSERT_OK_AND_ASSIGN(auto tail, SplitDataset(DistinctRows(1000), spec));
  EXPECT_EQ(*RowsOf(tail.second).begin(), 950);
  spec.holdout_split = HoldoutSplit::kSeededPermutation;
  ASSERT_OK_AND_ASSIGN(auto small, SplitDataset(DistinctRows(20), spec));
  EXPECT_EQ(small.second.size(0), 4);  // 20 / 5
  ASSERT_OK_AND_ASSIGN(auto two, SplitDataset(DistinctRows(2), spec));
  EXPECT_EQ(two.second.size(0), 1);
  EXPECT_THAT(SplitDataset(DistinctRows(1), spec),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("2 samples")));
}

}  // namespace
}  // namespace invnet
