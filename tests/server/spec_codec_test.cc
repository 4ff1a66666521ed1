#include "server/spec_codec.h"

#include <ATen/ATen.h>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "models/presets.h"
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

// Issue 19, item 5: an echoed value never makes a message grow with the request.
TEST(NamesTest, EchoedValuesAreCutAndEscaped) {
  EXPECT_EQ(QuoteForMessage("job-1"), "'job-1'");
  EXPECT_EQ(QuoteForMessage(std::string("a\nb", 3)), "'a\\nb'");
  const std::string quoted = QuoteForMessage(std::string(1 << 20, 'x'));
  EXPECT_LT(quoted.size(), kMaxEchoedChars + 40);
  EXPECT_THAT(quoted, HasSubstr("...' (1048576 bytes)"));
  const absl::Status status = ValidateName(std::string(20000, 'a'), "job_id");
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("job_id")));
  EXPECT_LT(status.message().size(), 200u);
}

TEST(NamesTest, RequestIdsHaveAPatternAndALength) {
  for (const char* good : {"a", "7f3c9a2e-0b1d-4c55-9a1e-2f6d8b0c4e11", "Retry_2"}) {
    EXPECT_OK(ValidateRequestId(good, "request_id"));
  }
  EXPECT_OK(ValidateRequestId(std::string(128, 'k'), "request_id"));
  for (const std::string& bad :
       {std::string(), std::string(129, 'k'), std::string("a b"), std::string("a/b")}) {
    EXPECT_THAT(ValidateRequestId(bad, "request_id"),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("request_id")));
  }
}

// Issue 19, item 8 (c): n above what a network takes is refused naming the operator field the
// client set, not architecture.dim (which only the server sets).
TEST(SpecCodecTest, SignalDimensionLimitNamesTheOperatorField) {
  v1::TrainRequest request;
  request.set_model_name("m");
  request.mutable_training()->set_loss(v1::LOSS_APPROXIMATION);
  request.mutable_problem()->mutable_operator_()->mutable_identity()->set_dim(65536);
  request.mutable_problem()->set_dataset("d");
  EXPECT_THAT(ResolveTrainRequest(request, TensorLimits()),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("problem.operator.identity.dim: signal dimension n = 65536 "
                                 "exceeds 4096")));
  request.mutable_problem()->mutable_operator_()->mutable_identity()->set_dim(4096);
  EXPECT_OK(ResolveTrainRequest(request, TensorLimits()).status());
  v1::Tensor* matrix =
      request.mutable_problem()->mutable_operator_()->mutable_dense()->mutable_matrix();
  matrix->add_shape(1);
  matrix->add_shape(4097);
  for (int i = 0; i < 4097; ++i) matrix->add_values(1.0f);
  EXPECT_THAT(ResolveTrainRequest(request, TensorLimits()),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("problem.operator.dense.matrix: signal dimension n = 4097")));
  // A preset name is a name: a huge one is refused with a short message.
  request.clear_problem();
  request.set_preset(std::string(1 << 20, 'p'));
  const absl::Status status = ResolveTrainRequest(request, TensorLimits()).status();
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("preset")));
  EXPECT_LT(status.message().size(), 300u);
}

// A random family's member is a preset like any other; the checkpoint names it.
TEST(SpecCodecTest, AFamilyMemberIsAPreset) {
  v1::TrainRequest request;
  request.set_model_name("m");
  request.set_preset("random8-1003");
  request.mutable_training()->set_loss(v1::LOSS_LOG_DET);
  ASSERT_OK_AND_ASSIGN(ResolvedTraining r, ResolveTrainRequest(request, TensorLimits()));
  EXPECT_EQ(r.preset, "random8-1003");
  EXPECT_EQ(r.problem.preset, "random8-1003");
  EXPECT_EQ(r.architecture.dim, 8);
  EXPECT_EQ(r.training.learning_rate, TrainingSpec().learning_rate);
  EXPECT_EQ(r.training.steps, 6000);  // DefaultTrainingSteps(8)
  request.set_preset("random2d-1003");
  ASSERT_OK_AND_ASSIGN(r, ResolveTrainRequest(request, TensorLimits()));
  EXPECT_EQ(r.training.steps, 3000);
  request.set_preset("random8-x");
  EXPECT_THAT(ResolveTrainRequest(request, TensorLimits()).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("FAMILY-SEED")));
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
  EXPECT_EQ(r.target_space_reason, "default for the divergence loss");
  // Not named: the unbiased log-det estimator; named: the request's.
  EXPECT_EQ(r.training.log_det_estimator, LogDetEstimator::kRussianRoulette);
  EXPECT_EQ(r.training.exact_jacobian_max_dim, 32);
  request.mutable_training()->set_log_det_estimator(v1::LOG_DET_ESTIMATOR_TRUNCATED_SERIES);
  request.mutable_training()->set_target_space(v1::TARGET_SPACE_MEASUREMENT);
  ASSERT_OK_AND_ASSIGN(ResolvedTraining named, ResolveTrainRequest(request, TensorLimits()));
  EXPECT_EQ(named.training.log_det_estimator, LogDetEstimator::kTruncatedSeries);
  EXPECT_EQ(named.target_space_reason, "");
  v1::Training encoded;
  EncodeTraining(named.training, &encoded);
  EXPECT_EQ(encoded.log_det_estimator(), v1::LOG_DET_ESTIMATOR_TRUNCATED_SERIES);
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
  // A non-square operator cannot use the measurement space, and the job says so.
  EXPECT_EQ(r.training.target_space, TargetSpace::kNormal);
  EXPECT_EQ(r.target_space_reason, "default for a non-square operator");
  EXPECT_EQ(r.training.steps, 3000);  // n = 2
}

// Without a preset the steps follow the signal's dimension (DefaultTrainingSteps); a preset
// keeps its own schedule, and training.steps overrides either.
TEST(SpecCodecTest, DefaultStepsFollowTheDimensionUnlessAPresetOrTheRequestSetsThem) {
  EXPECT_EQ(DefaultTrainingSteps(2), 3000);
  EXPECT_EQ(DefaultTrainingSteps(7), 3000);
  EXPECT_EQ(DefaultTrainingSteps(8), 6000);
  EXPECT_EQ(DefaultTrainingSteps(64), 6000);
  v1::TrainRequest request;
  request.set_model_name("m");
  request.mutable_training()->set_loss(v1::LOSS_APPROXIMATION);
  request.mutable_problem()->mutable_operator_()->mutable_identity()->set_dim(8);
  request.mutable_problem()->set_noise_level(0.1);
  request.mutable_problem()->set_dataset("faces");
  ASSERT_OK_AND_ASSIGN(ResolvedTraining r, ResolveTrainRequest(request, TensorLimits()));
  EXPECT_EQ(r.training.steps, 6000);
  request.mutable_training()->set_steps(100);
  ASSERT_OK_AND_ASSIGN(r, ResolveTrainRequest(request, TensorLimits()));
  EXPECT_EQ(r.training.steps, 100);
  v1::TrainRequest preset;
  preset.set_model_name("m");
  preset.set_preset("blur64");
  preset.mutable_training()->set_loss(v1::LOSS_APPROXIMATION);
  ASSERT_OK_AND_ASSIGN(r, ResolveTrainRequest(preset, TensorLimits()));
  EXPECT_EQ(r.architecture.dim, 64);
  EXPECT_EQ(r.training.steps, 3000);  // the preset's
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
