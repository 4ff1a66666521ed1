#include "server/hosted_model.h"

#include <ATen/ATen.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "models/checkpoint.h"
#include "models/estimators.h"
#include "models/iresnet.h"
#include "models/presets.h"
#include "tests/testing/status_matchers.h"

namespace invnet::server {
namespace {

using ::invnet::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

class HostedModelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Preset preset = GetPreset("bimodal2d", LossKind::kApproximation).value();
    preset.architecture.hidden_width = 8;
    preset.architecture.num_blocks = 2;
    preset.architecture.seed = 3;
    problem_ = preset.problem;
    training_ = preset.training;
    net_ = IResNet::Create(preset.architecture, at::kFloat).value();
    net_->SetTraining(false);
  }

  Checkpoint MakeRecord() const { return MakeCheckpoint(*net_, problem_, training_); }

  ProblemSpec problem_;
  TrainingSpec training_;
  std::unique_ptr<IResNet> net_;
};

TEST_F(HostedModelTest, ServesTheCheckpointsNetworkAndKeepsItsRecordWithoutWeights) {
  Checkpoint checkpoint = MakeRecord();
  checkpoint.metrics["val_mse"] = 0.125;
  checkpoint.labels["job_id"] = "job-1";
  ASSERT_FALSE(checkpoint.state.empty());
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<HostedModel> model,
                       HostedModel::Build("bimodal", 4, checkpoint, 12345));
  EXPECT_EQ(model->name, "bimodal");
  EXPECT_EQ(model->version, 4);
  EXPECT_EQ(model->size_bytes, 12345);
  // The record is the checkpoint's, less the weights.
  EXPECT_THAT(model->record.state, IsEmpty());
  EXPECT_EQ(model->record.metrics.at("val_mse"), 0.125);
  EXPECT_EQ(model->record.labels.at("job_id"), "job-1");
  EXPECT_EQ(model->record.architecture.num_blocks, 2);
  EXPECT_EQ(model->record.problem.preset, "bimodal2d");
  EXPECT_EQ(model->target_space(), checkpoint.training.target_space);
  // The served network is the trained one, re-certified.
  ASSERT_NE(model->network, nullptr);
  const at::Tensor x = at::randn({16, 2});
  ASSERT_OK_AND_ASSIGN(at::Tensor forward, model->network->Forward(x));
  EXPECT_TRUE(at::allclose(forward, net_->Forward(x), 1e-5, 1e-5));
  const LipschitzCertificate expected = net_->Certify();
  ASSERT_EQ(model->certificate.block_bounds.size(), expected.block_bounds.size());
  for (size_t k = 0; k < expected.block_bounds.size(); ++k) {
    EXPECT_DOUBLE_EQ(model->certificate.block_bounds[k], expected.block_bounds[k]) << k;
    EXPECT_LT(model->certificate.block_bounds[k], 1.0);
  }
  EXPECT_EQ(model->network->block_lipschitz().size(), 2u);
  // Operator, prior and references of the problem.
  ASSERT_NE(model->op, nullptr);
  EXPECT_EQ(model->signal_dim(), 2);
  EXPECT_EQ(model->measurement_dim(), model->op->output_dim());
  ASSERT_NE(model->prior, nullptr);
  EXPECT_EQ(model->prior->num_components(), problem_.prior->means.size(0));
  ASSERT_NE(model->references, nullptr);
  ASSERT_OK_AND_ASSIGN(auto op, LinearOperator::Create(problem_.op));
  ASSERT_OK_AND_ASSIGN(auto prior, GaussianMixture::Create(*problem_.prior));
  ASSERT_OK_AND_ASSIGN(auto references, BayesEstimators::Create(*op, *prior, problem_.noise_level));
  const at::Tensor y = at::randn({8, op->output_dim()}, at::kDouble);
  EXPECT_TRUE(
      at::allclose(model->references->PosteriorMean(y), references->PosteriorMean(y), 0.0, 1e-12));
}

TEST_F(HostedModelTest, TheCreationTimeComesFromTheLabelOrIsTheEpoch) {
  Checkpoint labelled = MakeRecord();
  labelled.labels["created_unix_ms"] = "1700000000123";
  ASSERT_OK_AND_ASSIGN(auto model, HostedModel::Build("m", 1, labelled, 0));
  EXPECT_EQ(model->created, absl::FromUnixMillis(1700000000123));
  Checkpoint unlabelled = MakeRecord();
  unlabelled.labels.erase("created_unix_ms");
  ASSERT_OK_AND_ASSIGN(model, HostedModel::Build("m", 1, unlabelled, 0));
  EXPECT_EQ(model->created, absl::UnixEpoch());
  Checkpoint garbled = MakeRecord();
  garbled.labels["created_unix_ms"] = "yesterday";
  ASSERT_OK_AND_ASSIGN(model, HostedModel::Build("m", 1, garbled, 0));
  EXPECT_EQ(model->created, absl::UnixEpoch());
}

TEST_F(HostedModelTest, WithoutNoiseOrWithoutAPriorThereAreNoReferences) {
  ProblemSpec noiseless = problem_;
  noiseless.noise_level = 0.0;
  ASSERT_OK_AND_ASSIGN(auto model,
                       HostedModel::Build("m", 1, MakeCheckpoint(*net_, noiseless, training_), 0));
  EXPECT_NE(model->prior, nullptr);
  EXPECT_EQ(model->references, nullptr);
  // A model trained on a dataset has no prior, so no references either.
  ProblemSpec on_dataset = problem_;
  on_dataset.prior.reset();
  on_dataset.dataset = DatasetRef{"samples", 100, 2, "100x2-crc32-00000000"};
  ASSERT_OK_AND_ASSIGN(model,
                       HostedModel::Build("m", 1, MakeCheckpoint(*net_, on_dataset, training_), 0));
  EXPECT_EQ(model->prior, nullptr);
  EXPECT_EQ(model->references, nullptr);
  EXPECT_EQ(model->record.problem.dataset->name, "samples");
  EXPECT_NE(model->network, nullptr);
}

TEST_F(HostedModelTest, AnOperatorOfAnotherDimensionIsInvalidArgument) {
  ProblemSpec wider = problem_;
  wider.op = OperatorSpec{};
  wider.op.kind = OperatorKind::kIdentity;
  wider.op.dim = 3;
  wider.prior.reset();
  wider.dataset = DatasetRef{"samples", 100, 3, ""};
  EXPECT_THAT(HostedModel::Build("m", 1, MakeCheckpoint(*net_, wider, training_), 0),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("operator and network dimensions differ")));
}

TEST_F(HostedModelTest, BadProblemsAndBadNetworksAreRefusedWithTheirCodes) {
  // An operator spec that does not validate.
  ProblemSpec bad_op = problem_;
  bad_op.op = OperatorSpec{};
  bad_op.op.kind = OperatorKind::kIdentity;
  bad_op.op.dim = 0;
  EXPECT_THAT(HostedModel::Build("m", 1, MakeCheckpoint(*net_, bad_op, training_), 0),
              StatusIs(absl::StatusCode::kInvalidArgument));
  // A prior whose weights do not sum to 1.
  ProblemSpec bad_prior = problem_;
  bad_prior.prior->weights = bad_prior.prior->weights * 2.0;
  EXPECT_THAT(HostedModel::Build("m", 1, MakeCheckpoint(*net_, bad_prior, training_), 0),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("weights")));
  // Weights that no longer match the certificate the checkpoint carries.
  Checkpoint tampered = MakeRecord();
  {
    at::NoGradGuard no_grad;
    for (auto& [name, t] : tampered.state) {
      if (name == "block0.layer0.weight") t.mul_(3.0);
    }
  }
  EXPECT_THAT(HostedModel::Build("m", 1, tampered, 0),
              StatusIs(absl::StatusCode::kInvalidArgument));
  // An honestly certified network that is not invertible (a weight scaled up, its sigma
  // estimate down, so the normalisation no longer bounds it).
  Checkpoint bad = MakeRecord();
  {
    at::NoGradGuard no_grad;
    for (auto& [name, t] : bad.state) {
      if (name == "block1.layer1.weight") t.mul_(20.0);
      if (name == "block1.layer1.sigma") t.fill_(1e-3);
    }
  }
  auto restored = IResNet::Create(bad.architecture, bad.dtype).value();
  ASSERT_OK(restored->LoadState(bad.state));
  restored->SetTraining(false);
  bad.certificate = restored->Certify();
  ASSERT_GE(bad.certificate.max_block_bound, 1.0);
  EXPECT_THAT(HostedModel::Build("m", 1, bad, 0),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("not invertible")));
}

TEST_F(HostedModelTest, AModelOutlivesItsCheckpointAndServesConcurrentReaders) {
  std::shared_ptr<const HostedModel> model;
  {
    ASSERT_OK_AND_ASSIGN(auto built, HostedModel::Build("m", 1, MakeRecord(), 0));
    model = std::move(built);
  }
  const at::Tensor y = at::randn({32, 2});
  ASSERT_OK_AND_ASSIGN(InverseResult expected, model->network->Inverse(y, InverseOptions()));
  std::vector<std::thread> readers;
  std::atomic<int> equal{0};
  for (int i = 0; i < 4; ++i) {
    readers.emplace_back([&, copy = model] {
      absl::StatusOr<InverseResult> x = copy->network->Inverse(y, InverseOptions());
      if (x.ok() && at::equal(x->x, expected.x)) ++equal;
    });
  }
  for (auto& reader : readers) reader.join();
  EXPECT_EQ(equal.load(), 4);
}

}  // namespace
}  // namespace invnet::server
