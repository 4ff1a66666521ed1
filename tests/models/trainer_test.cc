#include "models/trainer.h"

#include <cmath>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "models/checkpoint.h"
#include "models/presets.h"
#include "models/priors.h"
#include "tests/testing/status_matchers.h"

namespace invnet {
namespace {

using ::invnet::testing::StatusIs;
using ::testing::HasSubstr;

// bimodal2d with a small network and a short schedule.
TrainingRequest SmallRequest(LossKind loss, int64_t steps = 60) {
  Preset preset = GetPreset("bimodal2d", loss).value();
  TrainingRequest request;
  request.problem = preset.problem;
  request.architecture = preset.architecture;
  request.architecture.num_blocks = 2;
  request.architecture.hidden_width = 16;
  request.training = preset.training;
  request.training.steps = steps;
  request.training.batch_size = 64;
  request.training.learning_rate = 3e-3;
  request.training.validation_every = 20;
  request.training.validation_size = 200;
  return request;
}

TEST(TrainerTest, LossDecreasesAndTheCheckpointIsComplete) {
  TrainingRequest request = SmallRequest(LossKind::kApproximation, 200);
  request.problem.noise_level = 0.02;  // so the loss is dominated by the fit, not the noise
  std::vector<double> losses;
  int validations = 0;
  TrainerCallbacks callbacks;
  callbacks.on_progress = [&](const TrainingProgress& p) {
    if (p.step <= p.total_steps && losses.size() < 200) losses.push_back(p.loss);
    if (p.validation.has_value()) ++validations;
  };
  ASSERT_OK_AND_ASSIGN(Checkpoint ck, Train(request, callbacks));
  ASSERT_EQ(losses.size(), 200u);
  double first = 0, last = 0;
  for (int i = 0; i < 20; ++i) {
    first += losses[i];
    last += losses[180 + i];
  }
  EXPECT_LT(last, 0.5 * first);
  EXPECT_EQ(validations, 200 / 20);  // 9 during training, 1 final
  const std::vector<double>& forward = ck.curves.at("val_forward_error");
  ASSERT_EQ(forward.size(), 10u);
  EXPECT_LT(forward.back(), 0.5 * forward.front());
  EXPECT_GT(ck.metrics.at("val_mse"), 0.0);
  // At low noise the inverse of a good fit of A is close to the posterior mean.
  EXPECT_NEAR(ck.metrics.at("val_mse_ratio_to_pm"), 1.0, 0.2);
  EXPECT_EQ(ck.metrics.at("val_converged_fraction"), 1.0);
  EXPECT_DOUBLE_EQ(ck.training.loss_weight, 0.02 * 0.02);  // "delta^2" resolved
  EXPECT_LE(ck.certificate.max_block_bound, std::pow(0.9, 3) * (1 + 1e-6));
  ASSERT_OK_AND_ASSIGN(auto net, RestoreNetwork(ck));
  EXPECT_FALSE(net->is_training());
}

TEST(TrainerTest, SameSeedSameNetworkOtherSeedOtherNetwork) {
  TrainingRequest request = SmallRequest(LossKind::kDivergence, 30);
  ASSERT_OK_AND_ASSIGN(Checkpoint a, Train(request));
  ASSERT_OK_AND_ASSIGN(Checkpoint b, Train(request));
  request.training.seed = 99;
  ASSERT_OK_AND_ASSIGN(Checkpoint c, Train(request));
  bool all_equal_ab = true;
  bool all_equal_ac = true;
  for (size_t i = 0; i < a.state.size(); ++i) {
    all_equal_ab &= at::equal(a.state[i].second, b.state[i].second);
    all_equal_ac &= at::equal(a.state[i].second, c.state[i].second);
  }
  EXPECT_TRUE(all_equal_ab);
  EXPECT_FALSE(all_equal_ac);
  EXPECT_EQ(a.metrics.at("val_mse"), b.metrics.at("val_mse"));
}

TEST(TrainerTest, StopPredicateIsHonouredWithinOneStep) {
  TrainingRequest request = SmallRequest(LossKind::kApproximation, 1000);
  int steps_done = 0;
  TrainerCallbacks callbacks;
  callbacks.on_progress = [&](const TrainingProgress& p) { steps_done = p.step; };
  callbacks.should_stop = [&]() { return steps_done >= 7; };
  EXPECT_THAT(Train(request, callbacks),
              StatusIs(absl::StatusCode::kCancelled, HasSubstr("after 7 of 1000")));
  EXPECT_EQ(steps_done, 7);
}

TEST(TrainerTest, EveryLossTrainsAndRestores) {
  for (LossKind loss : {LossKind::kReconstruction, LossKind::kLogDet, LossKind::kDivergence}) {
    TrainingRequest request = SmallRequest(loss, 40);
    ASSERT_OK_AND_ASSIGN(Checkpoint ck, Train(request));
    EXPECT_EQ(ck.training.loss, loss);
    EXPECT_TRUE(std::isfinite(ck.metrics.at("final_loss"))) << LossKindName(loss);
    EXPECT_OK(RestoreNetwork(ck).status());
  }
}

TEST(TrainerTest, TrainsOnADataset) {
  TrainingRequest request = SmallRequest(LossKind::kApproximation, 40);
  auto prior = GaussianMixture::Create(*request.problem.prior).value();
  request.dataset_samples =
      prior->Sample(500, at::make_generator<at::CPUGeneratorImpl>(1)).to(at::kFloat);
  request.problem.prior.reset();
  request.problem.dataset = DatasetRef{"samples", 500, 2};
  ASSERT_OK_AND_ASSIGN(Checkpoint ck, Train(request));
  EXPECT_EQ(ck.metrics.count("val_mse_ratio_to_pm"), 0u);  // no prior, no posterior mean
  ASSERT_TRUE(ck.problem.dataset.has_value());
  EXPECT_EQ(ck.problem.dataset->name, "samples");
}

TEST(TrainerTest, BadRequestsNameTheirField) {
  TrainingRequest request = SmallRequest(LossKind::kApproximation);
  request.training.batch_size = 0;
  EXPECT_THAT(Train(request),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("training.batch_size")));
  request = SmallRequest(LossKind::kApproximation);
  request.training.learning_rate = -1;
  EXPECT_THAT(ValidateTrainingRequest(request),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("learning_rate")));
  request = SmallRequest(LossKind::kApproximation);
  request.problem.noise_level = -0.1;
  EXPECT_THAT(ValidateTrainingRequest(request),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("noise_level")));
  request = SmallRequest(LossKind::kApproximation);
  request.problem.prior->weights = at::tensor({0.7, 0.7}, at::kDouble);
  EXPECT_THAT(ValidateTrainingRequest(request),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("prior.weights")));
  request = SmallRequest(LossKind::kApproximation);
  request.problem.dataset = DatasetRef{"d", 10, 2};
  EXPECT_THAT(ValidateTrainingRequest(request),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("exactly one")));
  request = SmallRequest(LossKind::kApproximation);
  request.architecture.dim = 3;
  EXPECT_THAT(ValidateTrainingRequest(request),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("architecture.dim")));
  request = SmallRequest(LossKind::kApproximation);
  request.problem.op.matrix = at::randn({3, 2}, at::kDouble);
  request.training.target_space = TargetSpace::kMeasurement;
  EXPECT_THAT(ValidateTrainingRequest(request),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("target_space")));
  request.training.target_space = TargetSpace::kNormal;
  EXPECT_OK(ValidateTrainingRequest(request));
  request = SmallRequest(LossKind::kApproximation);
  request.architecture.lipschitz_coeff = 1.0;
  EXPECT_THAT(ValidateTrainingRequest(request),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("lipschitz_coeff")));
}

// Issue 19, item 8 (d): limits and values print exactly.
TEST(FormatExactTest, PrintsWhatReadsBackAsTheSameDouble) {
  EXPECT_EQ(FormatExact(10000001), "10000001");
  EXPECT_EQ(FormatExact(1e10), "10000000000");
  EXPECT_EQ(FormatExact(0.001), "0.001");
  EXPECT_EQ(FormatExact(1e30), "1e+30");
  EXPECT_EQ(FormatExact(-2.5), "-2.5");
  EXPECT_EQ(std::strtod(FormatExact(0.1 + 0.2).c_str(), nullptr), 0.1 + 0.2);
  TrainingRequest request = SmallRequest(LossKind::kApproximation);
  request.training.steps = 10000001;
  EXPECT_THAT(ValidateTrainingRequest(request),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("training.steps: 10000001 must be in [1, 10000000]")));
}

// Issue 19, item 7: a diverging run fails with a reason instead of publishing garbage.
TEST(DivergenceMonitorTest, FailsOnNonFiniteLossesAndOnGrowthByOrdersOfMagnitude) {
  DivergenceMonitor converging;
  for (int64_t step = 0; step < 1000; ++step) {
    EXPECT_OK(converging.Check(step, 5.0 / (1 + step) - 0.3));  // falls, crosses zero
  }
  DivergenceMonitor slow_rise;  // grows, but by far less than the factor
  for (int64_t step = 0; step < 1000; ++step) EXPECT_OK(slow_rise.Check(step, 1.0 + step));
  DivergenceMonitor nan;
  EXPECT_OK(nan.Check(0, 1.0));
  EXPECT_THAT(nan.Check(1, std::nan("")),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("training diverged")));
  DivergenceMonitor inf;
  EXPECT_THAT(inf.Check(0, INFINITY),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("loss is inf")));
  DivergenceMonitor exploding;
  for (int64_t step = 0; step < DivergenceMonitor::kEarlySteps; ++step) {
    EXPECT_OK(exploding.Check(step, 2.0));
  }
  EXPECT_OK(exploding.Check(10, 2.0 * DivergenceMonitor::kGrowthFactor));
  EXPECT_THAT(exploding.Check(11, 3e21),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("the loss grew to 3e+21 at step 11")));
}

// Issue 19, item 7: magnitudes that overflow float32 training, or a learning rate that only
// diverges, are refused before training, naming the field.
TEST(TrainerTest, MagnitudesAreValidatedUpFront) {
  TrainingRequest request = SmallRequest(LossKind::kApproximation);
  request.problem.prior->means = request.problem.prior->means * 1e30;
  EXPECT_THAT(ValidateTrainingRequest(request),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("prior.means")));
  EXPECT_THAT(Train(request),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("prior.means")));
  request = SmallRequest(LossKind::kApproximation);
  request.training.learning_rate = 1e10;
  EXPECT_THAT(ValidateTrainingRequest(request),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("training.learning_rate: 10000000000 must be in (0, 1]")));
  request = SmallRequest(LossKind::kApproximation);
  request.problem.noise_level = 1e300;
  EXPECT_THAT(ValidateTrainingRequest(request),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("problem.noise_level")));
  request = SmallRequest(LossKind::kApproximation);
  request.training.loss_weight = 1e300;
  EXPECT_THAT(ValidateTrainingRequest(request),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("training.loss_weight")));
  request = SmallRequest(LossKind::kApproximation);
  request.dataset_samples = at::full({10, 2}, 1e7, at::kFloat);
  request.problem.prior.reset();
  request.problem.dataset = DatasetRef{"d", 10, 2};
  EXPECT_THAT(ValidateTrainingRequest(request),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("problem.dataset")));
}

// The magnitude limits leave every built-in problem trainable.
TEST(PresetsTest, EveryPresetPassesTheMagnitudeLimits) {
  for (const std::string& name : PresetNames()) {
    for (LossKind loss : {LossKind::kApproximation, LossKind::kLogDet}) {
      Preset preset = GetPreset(name, loss).value();
      EXPECT_OK(ValidateProblemMagnitudes(preset.problem, preset.training, at::Tensor())) << name;
    }
  }
}

TEST(PresetsTest, KnownNamesAndDefaults) {
  EXPECT_THAT(GetPreset("nope", LossKind::kApproximation),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("bimodal2d")));
  for (const std::string& name : PresetNames()) {
    for (LossKind loss : {LossKind::kApproximation, LossKind::kDivergence}) {
      ASSERT_OK_AND_ASSIGN(Preset p, GetPreset(name, loss));
      TrainingRequest request;
      request.problem = p.problem;
      request.architecture = p.architecture;
      request.training = p.training;
      EXPECT_OK(ValidateTrainingRequest(request)) << name;
    }
  }
  EXPECT_EQ(GetPreset("bimodal2d", LossKind::kDivergence)->training.target_space,
            TargetSpace::kNormal);
  EXPECT_EQ(GetPreset("bimodal2d", LossKind::kLogDet)->training.target_space,
            TargetSpace::kMeasurement);
}

}  // namespace
}  // namespace invnet
