#include "server/spec_codec.h"

#include <ATen/ATen.h>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/names.h"
#include "tests/testing/status_matchers.h"

namespace invnet::server {
namespace {

using ::invnet::testing::StatusIs;
using ::testing::HasSubstr;

TEST(NamesTest, AcceptsOnlySafeNames) {
  for (const char* good : {"a", "bimodal2d", "m-1_x", "0abc"}) EXPECT_OK(ValidateName(good, "n"));
  for (const char* bad : {"", "A", "../etc", "a/b", ".hidden", "-x", "_x", "a.b", "a b"}) {
    EXPECT_THAT(ValidateName(bad, "model_name"),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("model_name")))
        << bad;
  }
  EXPECT_OK(ValidateName(std::string(63, 'a'), "n"));
  EXPECT_THAT(ValidateName(std::string(64, 'a'), "n"), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ValidateName(std::string("a\0b", 3), "n"),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(SpecCodecTest, PresetWithOverrides) {
  v1::TrainRequest request;
  request.set_model_name("m");
  request.set_preset("bimodal2d");
  request.mutable_training()->set_loss(v1::LOSS_DIVERGENCE);
  request.mutable_training()->set_steps(10);
  request.mutable_architecture()->set_hidden_width(8);
  request.mutable_architecture()->set_activation(v1::ACTIVATION_TANH);
  ASSERT_OK_AND_ASSIGN(ResolvedTraining r, ResolveTrainRequest(request, TensorLimits()));
  EXPECT_EQ(r.preset, "bimodal2d");
  EXPECT_EQ(r.training.steps, 10);
  EXPECT_EQ(r.training.batch_size, 512);  // the preset's
  EXPECT_EQ(r.training.loss, LossKind::kDivergence);
  EXPECT_EQ(r.training.target_space, TargetSpace::kNormal);  // the divergence loss's default
  EXPECT_LT(r.training.loss_weight, 0);                      // "delta^2", resolved later
  EXPECT_EQ(r.architecture.hidden_width, 8);
  EXPECT_EQ(r.architecture.num_blocks, 4);
  EXPECT_EQ(r.architecture.activation, Activation::kTanh);
  EXPECT_EQ(r.architecture.dim, 2);
  ASSERT_TRUE(r.problem.prior.has_value());
}

TEST(SpecCodecTest, ExplicitProblemReplacesThePresetsAndRoundTrips) {
  ProblemSpec problem;
  problem.op.kind = OperatorKind::kDense;
  problem.op.matrix = at::tensor({1.0, 0.5, 0.0, 2.0, 1.0, 0.0}, at::kDouble).view({3, 2});
  problem.noise_level = 0.1;
  problem.dataset = DatasetRef{"faces", 0, 2};
  v1::TrainRequest request;
  request.set_model_name("m");
  request.mutable_training()->set_loss(v1::LOSS_APPROXIMATION);
  EncodeProblem(problem, request.mutable_problem());
  ASSERT_OK_AND_ASSIGN(ResolvedTraining r, ResolveTrainRequest(request, TensorLimits()));
  EXPECT_EQ(r.preset, "");
  EXPECT_TRUE(at::allclose(r.problem.op.matrix, problem.op.matrix));
  EXPECT_EQ(r.problem.dataset->name, "faces");
  EXPECT_EQ(r.architecture.dim, 2);
  // A non-square operator cannot use the measurement space.
  EXPECT_EQ(r.training.target_space, TargetSpace::kNormal);
}

TEST(SpecCodecTest, RequestErrorsNameTheField) {
  v1::TrainRequest request;
  request.set_model_name("m");
  request.set_preset("bimodal2d");
  EXPECT_THAT(ResolveTrainRequest(request, TensorLimits()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("training.loss")));
  request.mutable_training()->set_loss(v1::LOSS_LOG_DET);
  request.set_preset("trimodal9d");
  EXPECT_THAT(ResolveTrainRequest(request, TensorLimits()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("preset")));
  request.clear_preset();
  EXPECT_THAT(ResolveTrainRequest(request, TensorLimits()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("problem")));
  request.mutable_problem()->mutable_operator_()->mutable_identity()->set_dim(2);
  EXPECT_THAT(ResolveTrainRequest(request, TensorLimits()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("problem.signals")));
  request.mutable_problem()->mutable_prior()->add_weights(1.0);
  request.mutable_problem()->mutable_prior()->mutable_means()->add_shape(1);
  EXPECT_THAT(ResolveTrainRequest(request, TensorLimits()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("prior.means")));
  request.clear_problem();
  request.set_preset("bimodal2d");
  request.mutable_training()->set_loss_weight(-1);
  EXPECT_THAT(ResolveTrainRequest(request, TensorLimits()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("training.loss_weight")));
}

}  // namespace
}  // namespace invnet::server
