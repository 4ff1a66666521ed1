// ReconstructionCore without gRPC: the four RPCs' logic called directly with protos, a plain
// stop predicate and a real repository on disk (the same calls through gRPC are in
// service_test.cc, cancellation through a real channel in abandoned_call_test.cc).

#include "server/reconstruction_core.h"

#include <ATen/ATen.h>

#include <cmath>
#include <memory>
#include <string>

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
    Preset preset = GetPreset("bimodal2d", LossKind::kApproximation).value();
    preset.architecture.hidden_width = 8;
    preset.architecture.num_blocks = 2;
    preset.architecture.seed = 3;
    std::unique_ptr<IResNet> net = IResNet::Create(preset.architecture, at::kFloat).value();
    net->SetTraining(false);
    ASSERT_THAT(
        models_->Publish("toy", MakeCheckpoint(*net, preset.problem, preset.training)).status(),
        IsOk());
    core_ = std::make_unique<ReconstructionCore>(models_.get(), datasets_.get(), ServiceLimits{},
                                                 BatcherOptions{}, nullptr);
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

}  // namespace
}  // namespace invnet::server
