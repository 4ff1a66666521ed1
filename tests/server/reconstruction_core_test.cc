// ReconstructionCore without gRPC: the five RPCs' logic called directly with protos, a plain
// stop predicate and a real repository on disk (the same calls through gRPC are in
// service_test.cc, cancellation through a real channel in abandoned_call_test.cc).

#include "server/reconstruction_core.h"

#include <ATen/ATen.h>

#include <cmath>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "models/checkpoint.h"
#include "models/iresnet.h"
#include "models/presets.h"
#include "tests/testing/scratch_directory.h"
#include "tests/testing/status_matchers.h"

namespace invnet::server {
namespace {

using ::invnet::testing::IsOk;
using ::invnet::testing::ScratchDirectory;
using ::invnet::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

// [rows, 2] values spread over the prior's support, deterministic.
v1::Tensor Batch(int64_t rows) {
  v1::Tensor tensor;
  tensor.add_shape(rows);
  tensor.add_shape(2);
  for (int64_t i = 0; i < 2 * rows; ++i) {
    tensor.add_values(static_cast<float>(std::sin(0.37 * static_cast<double>(i + 1))));
  }
  return tensor;
}

class ReconstructionCoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(models_, ModelRepository::Open(dir_.path()));
    ASSERT_OK_AND_ASSIGN(datasets_, DatasetStore::Open(dir_.path()));
    Publish("toy", LossKind::kApproximation, 3);
    core_ = std::make_unique<ReconstructionCore>(models_.get(), datasets_.get(), ServiceLimits{},
                                                 BatcherOptions{}, nullptr);
  }

  // An untrained bimodal2d network (2 blocks of width 8) for `loss`, with its default space.
  void Publish(const std::string& name, LossKind loss, uint64_t seed, double noise_level = 0) {
    Preset preset = GetPreset("bimodal2d", loss).value();
    preset.architecture.hidden_width = 8;
    preset.architecture.num_blocks = 2;
    preset.architecture.seed = seed;
    if (noise_level > 0) preset.problem.noise_level = noise_level;
    preset.training.loss_weight = 0.04;  // as a trained checkpoint records it (resolved)
    std::unique_ptr<IResNet> net = IResNet::Create(preset.architecture, at::kFloat).value();
    net->SetTraining(false);
    ASSERT_THAT(
        models_->Publish(name, MakeCheckpoint(*net, preset.problem, preset.training)).status(),
        IsOk());
  }

  ScratchDirectory dir_{"reconstruction_core"};
  std::unique_ptr<ModelRepository> models_;
  std::unique_ptr<DatasetStore> datasets_;
  std::unique_ptr<ReconstructionCore> core_;
  const std::function<bool()> never_ = [] { return false; };
};

TEST_F(ReconstructionCoreTest, ReconstructInvertsForward) {
  v1::ForwardRequest forward;
  forward.set_model("toy");
  *forward.mutable_signals() = Batch(64);
  v1::ForwardResponse phi_x;
  ASSERT_THAT(core_->Forward(forward, never_, &phi_x), IsOk());
  v1::ReconstructRequest reconstruct;
  reconstruct.set_model("toy");
  *reconstruct.mutable_measurements() = phi_x.outputs();
  v1::ReconstructResponse x_hat;
  ASSERT_THAT(core_->Reconstruct(reconstruct, never_, &x_hat), IsOk());
  EXPECT_EQ(x_hat.model(), "toy");
  EXPECT_EQ(x_hat.version(), 1);
  ASSERT_EQ(x_hat.reconstructions().values_size(), 128);
  for (int i = 0; i < 128; ++i) {
    EXPECT_NEAR(x_hat.reconstructions().values(i), forward.signals().values(i), 1e-4) << i;
  }
  ASSERT_EQ(x_hat.converged_size(), 64);
  for (int i = 0; i < 64; ++i) {
    EXPECT_TRUE(x_hat.converged(i)) << i;
    EXPECT_LE(x_hat.error_bound(i), 1e-5) << i;
  }
}

TEST_F(ReconstructionCoreTest, AStopThatFiresEndsTheSolveAsCancelled) {
  v1::ReconstructRequest reconstruct;
  reconstruct.set_model("toy");
  *reconstruct.mutable_measurements() = Batch(4096);
  v1::ReconstructResponse response;
  EXPECT_THAT(core_->Reconstruct(
                  reconstruct, [] { return true; }, &response),
              StatusIs(absl::StatusCode::kCancelled));
  v1::DrawTestPairsRequest draw;
  draw.set_model("toy");
  draw.set_count(100000);  // more than one block of draws: the stop is asked between them
  v1::DrawTestPairsResponse pairs;
  EXPECT_THAT(core_->DrawTestPairs(
                  draw, [] { return true; }, &pairs),
              StatusIs(absl::StatusCode::kCancelled));
}

TEST_F(ReconstructionCoreTest, BadRequestsNameTheField) {
  v1::ReconstructRequest unknown;
  unknown.set_model("nope");
  *unknown.mutable_measurements() = Batch(2);
  v1::ReconstructResponse response;
  EXPECT_THAT(core_->Reconstruct(unknown, never_, &response),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("nope")));
  v1::ReconstructRequest wrong_width;
  wrong_width.set_model("toy");
  wrong_width.mutable_measurements()->add_shape(1);
  wrong_width.mutable_measurements()->add_shape(3);
  for (int i = 0; i < 3; ++i) wrong_width.mutable_measurements()->add_values(0);
  EXPECT_THAT(core_->Reconstruct(wrong_width, never_, &response),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("measurements")));
  v1::DrawTestPairsRequest no_pairs;
  no_pairs.set_model("toy");
  v1::DrawTestPairsResponse pairs;
  EXPECT_THAT(core_->DrawTestPairs(no_pairs, never_, &pairs),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("count")));
  v1::EstimateRequest bad_estimator;
  bad_estimator.set_model("toy");
  *bad_estimator.mutable_measurements() = Batch(2);
  bad_estimator.add_estimators(static_cast<v1::Estimator>(99));
  v1::EstimateResponse estimates;
  EXPECT_THAT(core_->Estimate(bad_estimator, never_, &estimates),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("estimators")));
}

TEST_F(ReconstructionCoreTest, PairsAreSeededAndEstimatesAreThoseAskedFor) {
  v1::DrawTestPairsRequest draw;
  draw.set_model("toy");
  draw.set_count(5);
  draw.set_seed(7);
  v1::DrawTestPairsResponse first, again;
  ASSERT_THAT(core_->DrawTestPairs(draw, never_, &first), IsOk());
  ASSERT_THAT(core_->DrawTestPairs(draw, never_, &again), IsOk());
  EXPECT_EQ(first.signals().SerializeAsString(), again.signals().SerializeAsString());
  EXPECT_EQ(first.measurements().values_size(), 10);
  v1::EstimateRequest estimate;
  estimate.set_model("toy");
  *estimate.mutable_measurements() = first.measurements();
  estimate.add_estimators(v1::ESTIMATOR_POSTERIOR_MEAN);
  v1::EstimateResponse estimates;
  ASSERT_THAT(core_->Estimate(estimate, never_, &estimates), IsOk());
  EXPECT_EQ(estimates.posterior_mean().values_size(), 10);
  EXPECT_FALSE(estimates.has_map());
  EXPECT_EQ(estimates.map_objective_size(), 0);
}

// [rows, cols] of a response tensor, as doubles.
std::vector<double> Values(const v1::Tensor& t) {
  return std::vector<double>(t.values().begin(), t.values().end());
}

// mean over rows of ||a_i - b_i||^2, rows of width `cols`.
double MeanSquared(const std::vector<double>& a, const std::vector<double>& b, int64_t cols) {
  double sum = 0;
  for (size_t i = 0; i < a.size(); ++i) sum += (a[i] - b[i]) * (a[i] - b[i]);
  return sum / static_cast<double>(a.size() / static_cast<size_t>(cols));
}

// Evaluate's numbers against the same quantities assembled here from the other RPCs on the
// pairs DrawTestPairs returns for the same count and seed.
TEST_F(ReconstructionCoreTest, EvaluateScoresEveryModelOnTheDrawnPairs) {
  Publish("toy-divergence", LossKind::kDivergence, 4);
  constexpr int64_t kCount = 300;
  v1::EvaluateRequest request;
  request.add_models()->set_model("toy");
  request.add_models()->set_model("toy-divergence");
  request.set_count(kCount);
  request.set_seed(11);
  request.set_posterior_std(true);
  v1::EvaluateResponse response;
  ASSERT_THAT(core_->Evaluate(request, never_, &response), IsOk());
  EXPECT_EQ(response.count(), kCount);
  EXPECT_EQ(response.seed(), 11u);

  v1::DrawTestPairsRequest draw;
  draw.set_model("toy");
  draw.set_count(kCount);
  draw.set_seed(11);
  v1::DrawTestPairsResponse pairs;
  ASSERT_THAT(core_->DrawTestPairs(draw, never_, &pairs), IsOk());
  const std::vector<double> x = Values(pairs.signals());
  v1::EstimateRequest estimate;
  estimate.set_model("toy");
  *estimate.mutable_measurements() = pairs.measurements();
  v1::EstimateResponse exact;
  ASSERT_THAT(core_->Estimate(estimate, never_, &exact), IsOk());
  const std::vector<double> pm = Values(exact.posterior_mean());
  const std::vector<double> map = Values(exact.map());
  const double pm_mse = MeanSquared(pm, x, 2);
  auto expect_close = [](double actual, double expected) {
    EXPECT_NEAR(actual, expected, 1e-4 * std::max(1.0, std::abs(expected)));
  };

  ASSERT_EQ(response.references_size(), 4);
  EXPECT_TRUE(response.references_unavailable().empty());
  const std::pair<const char*, const v1::Tensor*> references[] = {
      {"posterior_mean", &exact.posterior_mean()},
      {"map", &exact.map()},
      {"wiener", &exact.wiener()},
      {"pseudo_inverse", &exact.pseudo_inverse()}};
  for (int r = 0; r < 4; ++r) {
    const v1::EstimatorScore& score = response.references(r);
    SCOPED_TRACE(references[r].first);
    EXPECT_EQ(score.estimator(), references[r].first);
    const std::vector<double> estimate_values = Values(*references[r].second);
    expect_close(score.mse(), MeanSquared(estimate_values, x, 2));
    expect_close(score.mse_ratio_to_pm(), MeanSquared(estimate_values, x, 2) / pm_mse);
    expect_close(score.rms_to_pm(), std::sqrt(MeanSquared(estimate_values, pm, 2)));
    expect_close(score.rms_to_map(), std::sqrt(MeanSquared(estimate_values, map, 2)));
    EXPECT_TRUE(std::isnan(score.forward_error()));
    EXPECT_TRUE(std::isnan(score.converged_fraction()));
  }
  double exact_std_sum = 0;
  for (float v : exact.posterior_std().values()) exact_std_sum += v;
  expect_close(response.references(0).mean_posterior_std(), exact_std_sum / (2.0 * kCount));

  ASSERT_EQ(response.models_size(), 2);
  for (int k = 0; k < 2; ++k) {
    const v1::EstimatorScore& score = response.models(k);
    SCOPED_TRACE(score.model());
    EXPECT_EQ(score.model(), request.models(k).model());
    EXPECT_EQ(score.version(), 1);
    EXPECT_TRUE(score.estimator().empty());
    v1::ReconstructRequest reconstruct;
    reconstruct.set_model(score.model());
    *reconstruct.mutable_measurements() = pairs.measurements();
    reconstruct.set_posterior_std(k == 1);
    v1::ReconstructResponse x_hat;
    ASSERT_THAT(core_->Reconstruct(reconstruct, never_, &x_hat), IsOk());
    const std::vector<double> rec = Values(x_hat.reconstructions());
    expect_close(score.mse(), MeanSquared(rec, x, 2));
    expect_close(score.mse_ratio_to_pm(), MeanSquared(rec, x, 2) / pm_mse);
    expect_close(score.rms_to_map(), std::sqrt(MeanSquared(rec, map, 2)));
    double converged = 0, iterations = 0;
    for (int i = 0; i < kCount; ++i) {
      converged += x_hat.converged(i) ? 1 : 0;
      iterations += static_cast<double>(x_hat.iterations(i));
    }
    EXPECT_DOUBLE_EQ(score.converged_fraction(), converged / kCount);
    EXPECT_NEAR(score.mean_iterations(), iterations / kCount, 0.05 * iterations / kCount);
    // The forward error against the exact map phi approximates (Forward with its map).
    v1::ForwardRequest forward;
    forward.set_model(score.model());
    *forward.mutable_signals() = pairs.signals();
    v1::ForwardResponse phi;
    ASSERT_THAT(core_->Forward(forward, never_, &phi), IsOk());
    forward.set_map(k == 1 ? v1::FORWARD_MAP_NORMAL_OPERATOR : v1::FORWARD_MAP_OPERATOR);
    v1::ForwardResponse target;
    ASSERT_THAT(core_->Forward(forward, never_, &target), IsOk());
    expect_close(score.forward_error(),
                 std::sqrt(MeanSquared(Values(phi.outputs()), Values(target.outputs()), 2)));
    if (k == 0) {
      // Approximation training defines no posterior std: the reason, no numbers.
      EXPECT_TRUE(score.posterior_std_method().empty());
      EXPECT_THAT(score.posterior_std_unavailable(), Not(IsEmpty()));
      EXPECT_TRUE(std::isnan(score.std_ratio_median()));
    } else {
      EXPECT_EQ(score.posterior_std_method(), x_hat.posterior_std_method());
      EXPECT_TRUE(score.posterior_std_unavailable().empty());
      double sum = 0;
      int defined = 0;
      for (float v : x_hat.posterior_std().values()) {
        if (std::isnan(v)) continue;
        sum += v;
        ++defined;
      }
      ASSERT_GT(defined, 0);
      expect_close(score.mean_posterior_std(), sum / defined);
      EXPECT_LE(score.std_ratio_q10(), score.std_ratio_median());
      EXPECT_LE(score.std_ratio_median(), score.std_ratio_q90());
    }
  }
}

// A x and A^T A x for bimodal2d's A = [[0.9, 0.2], [0.1, 0.5]] (models/presets.cc).
TEST_F(ReconstructionCoreTest, ForwardAppliesTheExactOperatorWhenAsked) {
  v1::ForwardRequest forward;
  forward.set_model("toy");
  *forward.mutable_signals() = Batch(3);
  forward.set_map(v1::FORWARD_MAP_OPERATOR);
  v1::ForwardResponse ax, atax;
  ASSERT_THAT(core_->Forward(forward, never_, &ax), IsOk());
  forward.set_map(v1::FORWARD_MAP_NORMAL_OPERATOR);
  ASSERT_THAT(core_->Forward(forward, never_, &atax), IsOk());
  for (int i = 0; i < 3; ++i) {
    const double x0 = forward.signals().values(2 * i), x1 = forward.signals().values(2 * i + 1);
    const double a = 0.9 * x0 + 0.2 * x1, b = 0.1 * x0 + 0.5 * x1;
    EXPECT_NEAR(ax.outputs().values(2 * i), a, 1e-6);
    EXPECT_NEAR(ax.outputs().values(2 * i + 1), b, 1e-6);
    EXPECT_NEAR(atax.outputs().values(2 * i), 0.9 * a + 0.1 * b, 1e-6);
    EXPECT_NEAR(atax.outputs().values(2 * i + 1), 0.2 * a + 0.5 * b, 1e-6);
  }
  forward.set_map(static_cast<v1::ForwardMap>(9));
  EXPECT_THAT(core_->Forward(forward, never_, &ax),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("map")));
}

TEST_F(ReconstructionCoreTest, EvaluateRefusesWhatItCannotCompare) {
  Publish("noisier", LossKind::kApproximation, 5, /*noise_level=*/0.35);
  v1::EvaluateResponse response;
  v1::EvaluateRequest none;
  none.set_count(10);
  EXPECT_THAT(core_->Evaluate(none, never_, &response),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("models")));
  v1::EvaluateRequest unknown;
  unknown.add_models()->set_model("toy");
  unknown.add_models()->set_model("nope");
  unknown.set_count(10);
  EXPECT_THAT(core_->Evaluate(unknown, never_, &response),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("models[1]")));
  v1::EvaluateRequest mixed;
  mixed.add_models()->set_model("toy");
  mixed.add_models()->set_model("noisier");
  mixed.set_count(10);
  EXPECT_THAT(core_->Evaluate(mixed, never_, &response),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("models[1]: 'noisier' version 1 was trained on another problem")));
  v1::EvaluateRequest no_pairs;
  no_pairs.add_models()->set_model("toy");
  EXPECT_THAT(core_->Evaluate(no_pairs, never_, &response),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("count")));
  v1::EvaluateRequest bad_solver = no_pairs;
  bad_solver.set_count(10);
  bad_solver.mutable_solver()->set_tolerance(-1);
  EXPECT_THAT(core_->Evaluate(bad_solver, never_, &response),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("tolerance")));
  // A caller who left: the work stops.
  v1::EvaluateRequest many = no_pairs;
  many.set_count(100000);
  EXPECT_THAT(core_->Evaluate(
                  many, [] { return true; }, &response),
              StatusIs(absl::StatusCode::kCancelled));
}

}  // namespace
}  // namespace invnet::server
