#include "models/checkpoint.h"

#include <dirent.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmath>

#include <ATen/ATen.h>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "models/archive.h"
#include "models/inverse.h"
#include "proto/base/file_io.h"
#include "tests/testing/scratch_directory.h"
#include "tests/testing/status_matchers.h"

namespace invnet {
namespace {

using ::invnet::testing::StatusIs;
using ::testing::AnyOf;
using ::testing::HasSubstr;

class CheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    IResNetConfig config;
    config.dim = 2;
    config.num_blocks = 3;
    config.hidden_width = 16;
    config.activation = Activation::kLipSwish;
    config.seed = 42;
    net_ = IResNet::Create(config, at::kFloat).value();
    net_->SetTraining(false);
    problem_.preset = "unit";
    problem_.op.kind = OperatorKind::kDense;
    problem_.op.matrix = at::tensor({0.9, 0.2, 0.1, 0.5}, at::kDouble).view({2, 2});
    problem_.noise_level = 0.2;
    GaussianMixtureSpec prior;
    prior.weights = at::tensor({0.5, 0.5}, at::kDouble);
    prior.means = at::tensor({-1.0, 0.0, 1.0, 0.0}, at::kDouble).view({2, 2});
    prior.covariances = at::eye(2, at::kDouble).expand({2, 2, 2}) * 0.09;
    problem_.prior = prior;
    training_.loss = LossKind::kDivergence;
    training_.loss_weight = 0.04;
    training_.steps = 123;
  }
  std::string Path(const std::string& name) const { return dir_ + "/" + name; }

  invnet::testing::ScratchDirectory scratch_{"checkpoint_test"};
  const std::string dir_ = scratch_.path();
  std::unique_ptr<IResNet> net_;
  ProblemSpec problem_;
  TrainingSpec training_;
};

TEST_F(CheckpointTest, RoundTripGivesBitIdenticalOutputs) {
  Checkpoint ck = MakeCheckpoint(*net_, problem_, training_, {{"val_mse", 0.0931}},
                                 {{"loss", {3.0, 2.0, 1.5}}});
  ck.labels["job_id"] = "job-1";
  ASSERT_OK(SaveCheckpoint(ck, Path("model.ckpt")));
  ASSERT_OK_AND_ASSIGN(Checkpoint loaded, LoadCheckpoint(Path("model.ckpt")));
  ASSERT_OK_AND_ASSIGN(auto restored, RestoreNetwork(loaded));
  EXPECT_FALSE(restored->is_training());
  at::Tensor x = at::randn({100, 2});
  EXPECT_TRUE(at::equal(restored->Forward(x), net_->Forward(x)));
  ASSERT_OK_AND_ASSIGN(auto frozen_a, FrozenIResNet::Create(*net_));
  ASSERT_OK_AND_ASSIGN(auto frozen_b, FrozenIResNet::Create(*restored));
  InverseOptions options;
  ASSERT_OK_AND_ASSIGN(InverseResult a, frozen_a->Inverse(x, options));
  ASSERT_OK_AND_ASSIGN(InverseResult b, frozen_b->Inverse(x, options));
  EXPECT_TRUE(at::equal(a.x, b.x));

  // Every record survives.
  EXPECT_EQ(loaded.architecture.activation, Activation::kLipSwish);
  EXPECT_EQ(loaded.architecture.seed, 42u);
  EXPECT_EQ(loaded.problem.preset, "unit");
  EXPECT_TRUE(at::equal(loaded.problem.op.matrix, problem_.op.matrix));
  EXPECT_DOUBLE_EQ(loaded.problem.noise_level, 0.2);
  ASSERT_TRUE(loaded.problem.prior.has_value());
  EXPECT_TRUE(at::equal(loaded.problem.prior->covariances, problem_.prior->covariances));
  EXPECT_EQ(loaded.training.loss, LossKind::kDivergence);
  EXPECT_EQ(loaded.training.steps, 123);
  // Written explicitly (a checkpoint without the key reads as the truncated series).
  EXPECT_EQ(loaded.training.log_det_estimator, LogDetEstimator::kRussianRoulette);
  EXPECT_DOUBLE_EQ(loaded.metrics.at("val_mse"), 0.0931);
  EXPECT_EQ(loaded.curves.at("loss"), (std::vector<double>{3.0, 2.0, 1.5}));
  EXPECT_EQ(loaded.labels.at("job_id"), "job-1");
  EXPECT_EQ(loaded.certificate.block_bounds, ck.certificate.block_bounds);
  // Serialisation is deterministic.
  EXPECT_EQ(SerializeCheckpoint(loaded), SerializeCheckpoint(ck));
}

TEST_F(CheckpointTest, ConvolutionProblemsAndDatasetsRoundTrip) {
  problem_.op = OperatorSpec();
  problem_.op.kind = OperatorKind::kConvolution;
  problem_.op.dim = 2;
  problem_.op.kernel = {0.3, 0.7};
  problem_.op.boundary = Boundary::kZero;
  problem_.prior.reset();
  problem_.dataset = DatasetRef{"faces", 1000, 2};
  ASSERT_OK_AND_ASSIGN(Checkpoint loaded,
                       ParseCheckpoint(SerializeCheckpoint(MakeCheckpoint(*net_, problem_, training_))));
  EXPECT_EQ(loaded.problem.op.kernel, (std::vector<double>{0.3, 0.7}));
  EXPECT_EQ(loaded.problem.op.boundary, Boundary::kZero);
  ASSERT_TRUE(loaded.problem.dataset.has_value());
  EXPECT_EQ(loaded.problem.dataset->name, "faces");
  EXPECT_FALSE(loaded.problem.prior.has_value());
}

// Issue 19, item 6: a checkpoint records its dataset's fingerprint; one written before the
// fingerprint existed (no such key) still loads, with an empty fingerprint.
TEST_F(CheckpointTest, DatasetFingerprintRoundTripsAndIsOptional) {
  problem_.prior.reset();
  problem_.dataset = DatasetRef{"faces", 1000, 2, "1000x2-crc32-0badf00d"};
  const std::string with = SerializeCheckpoint(MakeCheckpoint(*net_, problem_, training_));
  ASSERT_OK_AND_ASSIGN(Checkpoint loaded, ParseCheckpoint(with));
  EXPECT_EQ(loaded.problem.dataset->fingerprint, "1000x2-crc32-0badf00d");
  problem_.dataset->fingerprint.clear();
  const std::string old = SerializeCheckpoint(MakeCheckpoint(*net_, problem_, training_));
  EXPECT_EQ(old.find("problem.dataset.fingerprint"), std::string::npos);
  ASSERT_OK_AND_ASSIGN(Checkpoint old_loaded, ParseCheckpoint(old));
  EXPECT_EQ(old_loaded.problem.dataset->fingerprint, "");
  EXPECT_EQ(old_loaded.problem.dataset->num_samples, 1000);
}

TEST_F(CheckpointTest, TruncatedFilesAreDataLoss) {
  std::string bytes = SerializeCheckpoint(MakeCheckpoint(*net_, problem_, training_));
  for (size_t len = 0; len < bytes.size(); len += std::max<size_t>(1, bytes.size() / 97)) {
    auto result = ParseCheckpoint(bytes.substr(0, len));
    // Below the magic bytes the file is not recognisable as ours at all.
    EXPECT_THAT(result, AnyOf(StatusIs(absl::StatusCode::kDataLoss),
                              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("magic"))))
        << "length " << len;
    if (len >= 8) {
      EXPECT_THAT(result, StatusIs(absl::StatusCode::kDataLoss)) << len;
    }
  }
  EXPECT_THAT(ParseCheckpoint(bytes.substr(0, bytes.size() - 1)),
              StatusIs(absl::StatusCode::kDataLoss));
}

TEST_F(CheckpointTest, BitFlipsAreDataLoss) {
  std::string bytes = SerializeCheckpoint(MakeCheckpoint(*net_, problem_, training_));
  for (size_t pos = 8; pos < bytes.size(); pos += 13) {
    for (int bit : {0, 5}) {
      std::string flipped = bytes;
      flipped[pos] = static_cast<char>(flipped[pos] ^ (1 << bit));
      EXPECT_THAT(ParseCheckpoint(flipped),
                  StatusIs(absl::StatusCode::kDataLoss, HasSubstr("checksum")))
          << "byte " << pos;
    }
  }
}

TEST_F(CheckpointTest, ForeignFilesAreInvalidArgument) {
  EXPECT_THAT(ParseCheckpoint("PK\x03\x04 this is a zip, not a checkpoint"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not an invnet")));
  EXPECT_THAT(ParseCheckpoint(""), StatusIs(absl::StatusCode::kInvalidArgument));
  ArchiveWriter other("invnet.something_else");
  other.PutInt("x", 1);
  EXPECT_THAT(ParseCheckpoint(other.Finish()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("invnet.something_else")));
  // A well-formed archive of the right kind that lacks fields.
  ArchiveWriter empty("invnet.checkpoint");
  empty.PutInt("architecture.dim", 2);
  EXPECT_THAT(ParseCheckpoint(empty.Finish()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("missing field")));
}

TEST_F(CheckpointTest, ContentIsValidatedAfterTheChecksum) {
  Checkpoint ck = MakeCheckpoint(*net_, problem_, training_);
  Checkpoint bad = ck;
  bad.architecture.lipschitz_coeff = 1.5;
  EXPECT_THAT(ParseCheckpoint(SerializeCheckpoint(bad)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("lipschitz_coeff")));
  bad = ck;
  bad.problem.op.matrix = at::full({2, 2}, NAN, at::kDouble);
  EXPECT_THAT(ParseCheckpoint(SerializeCheckpoint(bad)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("operator.matrix")));
}

TEST_F(CheckpointTest, CertificateMustMatchTheWeights) {
  Checkpoint ck = MakeCheckpoint(*net_, problem_, training_);
  {
    at::NoGradGuard no_grad;
    ck.state[0].second.mul_(0.5);  // block0.layer0.weight, now below its sigma estimate
  }
  ASSERT_OK_AND_ASSIGN(Checkpoint loaded, ParseCheckpoint(SerializeCheckpoint(ck)));
  EXPECT_THAT(RestoreNetwork(loaded),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("certificate")));
}

TEST_F(CheckpointTest, AHugeArchitectureWithASmallStateIsRefusedBeforeAllocating) {
  // A well-formed, checksummed checkpoint that claims the largest allowed architecture (64
  // blocks of 8 layers 4096 wide: about 34 GB of float32 state) but holds the small network's
  // tensors. The network must not be allocated before the shapes are compared.
  Checkpoint ck = MakeCheckpoint(*net_, problem_, training_);
  ck.architecture.num_blocks = 64;
  ck.architecture.hidden_width = 4096;
  ck.architecture.layers_per_block = 8;
  ck.certificate.block_bounds.assign(64, 0.5);
  ck.certificate.layer_sigmas.assign(64, std::vector<double>(8, 0.9));
  ASSERT_OK_AND_ASSIGN(Checkpoint parsed, ParseCheckpoint(SerializeCheckpoint(ck)));
  rusage before{};
  getrusage(RUSAGE_SELF, &before);
  EXPECT_THAT(RestoreNetwork(parsed),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("network state")));
  rusage after{};
  getrusage(RUSAGE_SELF, &after);
  EXPECT_LT(after.ru_maxrss - before.ru_maxrss, 64 * 1024) << "kB of peak resident memory";
  // The same tensor count with one wrong shape is refused by name, too.
  Checkpoint renamed = MakeCheckpoint(*net_, problem_, training_);
  renamed.state[0].second = at::zeros({3, 3});
  EXPECT_THAT(RestoreNetwork(renamed),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(renamed.state[0].first)));
}

TEST_F(CheckpointTest, NonInvertibleNetworksAreRefused) {
  Checkpoint ck = MakeCheckpoint(*net_, problem_, training_);
  // Scale a weight up and its sigma estimate down: the normalisation no longer bounds it.
  {
    at::NoGradGuard no_grad;
    for (auto& [name, t] : ck.state) {
      if (name == "block1.layer1.weight") t.mul_(20.0);
      if (name == "block1.layer1.sigma") t.fill_(1e-3);
    }
  }
  auto restored = IResNet::Create(ck.architecture, ck.dtype).value();
  ASSERT_OK(restored->LoadState(ck.state));
  restored->SetTraining(false);
  ck.certificate = restored->Certify();  // an honest certificate of a bad network
  ASSERT_GE(ck.certificate.max_block_bound, 1.0);
  ASSERT_OK_AND_ASSIGN(Checkpoint loaded, ParseCheckpoint(SerializeCheckpoint(ck)));
  EXPECT_THAT(RestoreNetwork(loaded),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("not invertible")));
}

TEST_F(CheckpointTest, SavesAreAtomicAndLeaveNoTemporaryFiles) {
  Checkpoint first = MakeCheckpoint(*net_, problem_, training_, {{"version", 1}});
  Checkpoint second = MakeCheckpoint(*net_, problem_, training_, {{"version", 2}});
  ASSERT_OK(SaveCheckpoint(first, Path("m.ckpt")));
  ASSERT_OK(SaveCheckpoint(second, Path("m.ckpt")));
  ASSERT_OK_AND_ASSIGN(Checkpoint loaded, LoadCheckpoint(Path("m.ckpt")));
  EXPECT_EQ(loaded.metrics.at("version"), 2);
  DIR* d = opendir(dir_.c_str());
  int files = 0;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] != '.') ++files;
  }
  closedir(d);
  EXPECT_EQ(files, 1);
}

TEST_F(CheckpointTest, FileSystemErrorsHaveTheirCodes) {
  Checkpoint ck = MakeCheckpoint(*net_, problem_, training_);
  EXPECT_THAT(SaveCheckpoint(ck, Path("no/such/dir/m.ckpt")),
              StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(LoadCheckpoint(Path("missing.ckpt")),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("missing.ckpt")));
  ASSERT_OK(WriteFileAtomically(Path("garbage.ckpt"), "hello"));
  EXPECT_THAT(LoadCheckpoint(Path("garbage.ckpt")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("garbage.ckpt")));
}

// Checkpoints from before the Lipschitz split keep loading, as what they are: every layer at c,
// so the block bounds certify at up to c^L, and the served network is the one that was trained.
TEST(LegacyCheckpointTest, CheckpointsFromBeforeTheSplitLoadWithEveryLayerAtC) {
  ASSERT_OK_AND_ASSIGN(Checkpoint legacy,
                       LoadCheckpoint(INVNET_TESTDATA_DIR "/legacy_every_layer_f32.ckpt"));
  EXPECT_EQ(legacy.architecture.lipschitz_split, LipschitzSplit::kEveryLayer);
  // Written before the Russian roulette: it trained with the truncated series.
  EXPECT_EQ(legacy.training.log_det_estimator, LogDetEstimator::kTruncatedSeries);
  ASSERT_OK_AND_ASSIGN(auto net, RestoreNetwork(legacy));
  const double c = legacy.architecture.lipschitz_coeff;
  const double block_cap = std::pow(c, legacy.architecture.layers_per_block);
  LipschitzCertificate cert = net->Certify();
  for (size_t k = 0; k < cert.block_bounds.size(); ++k) {
    EXPECT_LE(cert.block_bounds[k], block_cap * (1 + 1e-6));
    for (double sigma : cert.layer_sigmas[k]) EXPECT_LE(sigma, c * (1 + 1e-6));
  }
  // Saved again, it says so explicitly and restores to the same network.
  ASSERT_OK_AND_ASSIGN(Checkpoint again, ParseCheckpoint(SerializeCheckpoint(legacy)));
  EXPECT_EQ(again.architecture.lipschitz_split, LipschitzSplit::kEveryLayer);
  ASSERT_OK_AND_ASSIGN(auto restored, RestoreNetwork(again));
  at::Tensor x = at::randn({4, net->dim()});
  EXPECT_TRUE(at::equal(net->Forward(x), restored->Forward(x)));
}
}  // namespace
}  // namespace invnet
