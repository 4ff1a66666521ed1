#include "server/model_repository.h"

#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <map>

#include <ATen/ATen.h>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "invnet/v1/training_service.pb.h"
#include "models/archive.h"
#include "models/presets.h"
#include "proto/base/file_io.h"
#include "server/dataset_store.h"
#include "server/job_manager.h"
#include "server/repository_check.h"
#include "tests/testing/scratch_directory.h"
#include "tests/testing/status_matchers.h"

namespace invnet::server {
namespace {

namespace fs = std::filesystem;
using ::invnet::testing::StatusIs;
using ::testing::HasSubstr;

class RepositoryTest : public ::testing::Test {
 protected:
  // An untrained but valid bimodal2d checkpoint with a given seed.
  Checkpoint MakeCheckpointWithSeed(uint64_t seed) {
    Preset preset = GetPreset("bimodal2d", LossKind::kApproximation).value();
    preset.architecture.seed = seed;
    preset.architecture.hidden_width = 8;
    auto net = IResNet::Create(preset.architecture, at::kFloat).value();
    net->SetTraining(false);
    return MakeCheckpoint(*net, preset.problem, preset.training);
  }

  invnet::testing::ScratchDirectory scratch_{"repository_test"};
  const std::string root_ = scratch_.path();
};

TEST_F(RepositoryTest, PublishesVersionsThatSurviveARestart) {
  at::Tensor y = at::randn({16, 2});
  at::Tensor x1, x2;
  {
    ASSERT_OK_AND_ASSIGN(auto repo, ModelRepository::Open(root_));
    ASSERT_OK_AND_ASSIGN(auto v1, repo->Publish("alpha", MakeCheckpointWithSeed(1)));
    ASSERT_OK_AND_ASSIGN(auto v2, repo->Publish("alpha", MakeCheckpointWithSeed(2)));
    EXPECT_EQ(v1->version, 1);
    EXPECT_EQ(v2->version, 2);
    ASSERT_OK_AND_ASSIGN(auto latest, repo->Get("alpha", 0));
    EXPECT_EQ(latest->version, 2);
    x1 = v1->network->Inverse(y, InverseOptions()).value().x;
    x2 = v2->network->Inverse(y, InverseOptions()).value().x;
    EXPECT_FALSE(at::equal(x1, x2));
  }
  ASSERT_OK_AND_ASSIGN(auto repo, ModelRepository::Open(root_));
  EXPECT_TRUE(repo->load_problems().empty());
  ASSERT_OK_AND_ASSIGN(auto v1, repo->Get("alpha", 1));
  ASSERT_OK_AND_ASSIGN(auto v2, repo->Get("alpha", 2));
  EXPECT_TRUE(at::equal(v1->network->Inverse(y, InverseOptions()).value().x, x1));
  EXPECT_TRUE(at::equal(v2->network->Inverse(y, InverseOptions()).value().x, x2));
  EXPECT_EQ(repo->num_versions(), 2);
}

TEST_F(RepositoryTest, BrokenEntriesAreSkippedAndReported) {
  {
    ASSERT_OK_AND_ASSIGN(auto repo, ModelRepository::Open(root_));
    ASSERT_OK(repo->Publish("good", MakeCheckpointWithSeed(1)).status());
    ASSERT_OK(repo->Publish("damaged", MakeCheckpointWithSeed(2)).status());
  }
  // Flip a byte in the middle of one checkpoint, add junk entries and crash leftovers.
  const std::string damaged = root_ + "/models/damaged/1/model.ckpt";
  std::string bytes = ReadFileToString(damaged).value();
  bytes[bytes.size() / 2] ^= 0x10;
  ASSERT_OK(WriteFileAtomically(damaged, bytes));
  fs::create_directories(root_ + "/models/good/notaversion");
  fs::create_directories(root_ + "/models/Bad.Name");
  fs::create_directories(root_ + "/tmp/half-published");
  std::ofstream(root_ + "/tmp/half-published/model.ckpt") << "partial";
  ASSERT_OK_AND_ASSIGN(auto repo, ModelRepository::Open(root_));
  EXPECT_OK(repo->Get("good", 1).status());
  EXPECT_THAT(repo->Get("damaged", 0), StatusIs(absl::StatusCode::kNotFound));
  std::string problems;
  for (const auto& p : repo->load_problems()) problems += p + "\n";
  EXPECT_THAT(problems, HasSubstr("models/damaged/1: DATA_LOSS"));
  EXPECT_THAT(problems, HasSubstr("notaversion"));
  EXPECT_THAT(problems, HasSubstr("Bad.Name"));
  EXPECT_FALSE(fs::exists(root_ + "/tmp/half-published"));
  // The damaged version's number is not reused.
  ASSERT_OK_AND_ASSIGN(auto next, repo->Publish("damaged", MakeCheckpointWithSeed(3)));
  EXPECT_EQ(next->version, 2);
}

TEST_F(RepositoryTest, DeleteIsAtomicAndKeepsInFlightModelsAlive) {
  ASSERT_OK_AND_ASSIGN(auto repo, ModelRepository::Open(root_));
  ASSERT_OK_AND_ASSIGN(auto v1, repo->Publish("m", MakeCheckpointWithSeed(1)));
  ASSERT_OK(repo->Publish("m", MakeCheckpointWithSeed(2)).status());
  ASSERT_OK(repo->Delete("m", 1));
  EXPECT_THAT(repo->Delete("m", 1), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_FALSE(fs::exists(root_ + "/models/m/1"));
  // A request holding version 1 still has a working model.
  EXPECT_OK(v1->network->Inverse(at::randn({2, 2}), InverseOptions()).status());
  ASSERT_OK(repo->Delete("m", 0));
  EXPECT_THAT(repo->Get("m", 0), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(repo->Delete("../m", 0), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_TRUE(fs::is_empty(root_ + "/trash"));
}

TEST_F(RepositoryTest, InvalidCheckpointsAreNeverWritten) {
  ASSERT_OK_AND_ASSIGN(auto repo, ModelRepository::Open(root_));
  Checkpoint bad = MakeCheckpointWithSeed(1);
  bad.certificate.block_bounds[0] += 0.01;  // does not match the weights
  EXPECT_THAT(repo->Publish("m", bad), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_FALSE(fs::exists(root_ + "/models/m/1"));
  EXPECT_TRUE(fs::is_empty(root_ + "/tmp"));
  EXPECT_THAT(repo->Publish("No", MakeCheckpointWithSeed(1)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("model_name")));
}

TEST_F(RepositoryTest, DatasetsAreCompleteOrAbsent) {
  at::Tensor samples = at::randn({50, 3});
  {
    ASSERT_OK_AND_ASSIGN(auto store, DatasetStore::Open(root_));
    ASSERT_OK(store->Reserve("d"));
    EXPECT_THAT(store->Reserve("d"), StatusIs(absl::StatusCode::kAlreadyExists));
    ASSERT_OK(store->Save("d", samples).status());
    EXPECT_THAT(store->Reserve("d"), StatusIs(absl::StatusCode::kAlreadyExists));
  }
  std::ofstream(root_ + "/datasets/e.dataset.tmp-123-0") << "interrupted write";
  std::ofstream(root_ + "/datasets/f.dataset") << "garbage";
  ASSERT_OK_AND_ASSIGN(auto store, DatasetStore::Open(root_));
  ASSERT_OK_AND_ASSIGN(at::Tensor loaded, store->Load("d"));
  EXPECT_TRUE(at::equal(loaded, samples));
  EXPECT_EQ(store->List().size(), 1u);
  EXPECT_EQ(store->load_problems().size(), 1u);
  EXPECT_FALSE(fs::exists(root_ + "/datasets/e.dataset.tmp-123-0"));
  EXPECT_THAT(store->Load("f"), StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(RepositoryTest, JobsInterruptedByARestartShowAsFailed) {
  fs::create_directories(root_ + "/jobs");
  v1::TrainingJob running;
  running.set_job_id("job-interrupted");
  running.set_model_name("m");
  running.set_state(v1::JOB_STATE_RUNNING);
  running.set_step(17);
  ArchiveWriter writer("invnet.job");
  writer.PutString("job", running.SerializeAsString());
  ASSERT_OK(WriteFileAtomically(root_ + "/jobs/job-interrupted.job", writer.Finish()));
  std::ofstream(root_ + "/jobs/job-garbage.job") << "garbage";
  ASSERT_OK_AND_ASSIGN(auto repo, ModelRepository::Open(root_));
  ASSERT_OK_AND_ASSIGN(auto store, DatasetStore::Open(root_));
  {
    ASSERT_OK_AND_ASSIGN(auto jobs, JobManager::Create(root_, repo.get(), store.get(), {}));
    ASSERT_OK_AND_ASSIGN(v1::TrainingJob job, jobs->Get("job-interrupted"));
    EXPECT_EQ(job.state(), v1::JOB_STATE_FAILED);
    EXPECT_THAT(job.error(), HasSubstr("server restarted"));
    EXPECT_EQ(job.step(), 17);
    EXPECT_EQ(jobs->load_problems().size(), 1u);
  }
  // The failure was persisted.
  ASSERT_OK_AND_ASSIGN(auto jobs, JobManager::Create(root_, repo.get(), store.get(), {}));
  EXPECT_EQ(jobs->Get("job-interrupted")->state(), v1::JOB_STATE_FAILED);
  EXPECT_EQ(repo->num_versions(), 0);
}

// Every file under `root`, with its size: what the checker must leave as it found it.
std::map<std::string, uintmax_t> Snapshot(const std::string& root) {
  std::map<std::string, uintmax_t> files;
  for (const auto& entry : fs::recursive_directory_iterator(root)) {
    files[entry.path().string()] = entry.is_regular_file() ? entry.file_size() : 0;
  }
  return files;
}

TEST_F(RepositoryTest, TheVersionLimitHoldsForPublicationAndForNewJobs) {
  ASSERT_OK_AND_ASSIGN(auto repo, ModelRepository::Open(root_));
  ASSERT_OK_AND_ASSIGN(auto store, DatasetStore::Open(root_));
  repo->set_max_versions(1);
  ASSERT_OK(repo->Publish("first", MakeCheckpointWithSeed(1)).status());
  auto refused = repo->Publish("second", MakeCheckpointWithSeed(2));
  EXPECT_THAT(refused, StatusIs(absl::StatusCode::kResourceExhausted));
  EXPECT_THAT(refused.status().message(), HasSubstr("--max_models"));
  EXPECT_EQ(repo->num_versions(), 1);
  ASSERT_OK_AND_ASSIGN(auto jobs, JobManager::Create(root_, repo.get(), store.get(), {}));
  v1::TrainRequest request;
  request.set_model_name("third");
  request.set_preset("bimodal2d");
  request.mutable_training()->set_loss(v1::LOSS_APPROXIMATION);
  request.mutable_training()->set_steps(1);
  auto job = jobs->Submit(request);
  EXPECT_THAT(job, StatusIs(absl::StatusCode::kResourceExhausted));
  EXPECT_THAT(job.status().message(), HasSubstr("--max_models"));
  // Deleting makes room.
  ASSERT_OK(repo->Delete("first", 1));
  EXPECT_OK(repo->Publish("second", MakeCheckpointWithSeed(2)).status());
}

TEST_F(RepositoryTest, TheOfflineCheckReportsDamageAndLeftoversAndChangesNothing) {
  {
    ASSERT_OK_AND_ASSIGN(auto repo, ModelRepository::Open(root_));
    ASSERT_OK(repo->Publish("good", MakeCheckpointWithSeed(1)).status());
    ASSERT_OK(repo->Publish("damaged", MakeCheckpointWithSeed(2)).status());
    ASSERT_OK_AND_ASSIGN(auto store, DatasetStore::Open(root_));
    ASSERT_OK(store->Reserve("samples"));
    ASSERT_OK(store->Save("samples", at::randn({20, 2})).status());
  }
  ASSERT_OK_AND_ASSIGN(RepositoryReport clean, CheckRepository(root_));
  EXPECT_TRUE(clean.healthy());
  EXPECT_EQ(clean.model_versions, 2);
  EXPECT_EQ(clean.datasets, 1);
  EXPECT_THAT(FormatRepositoryReport(root_, clean), HasSubstr("OK: nothing damaged"));

  const std::string damaged = root_ + "/models/damaged/1/model.ckpt";
  std::string bytes = ReadFileToString(damaged).value();
  bytes[bytes.size() / 3] ^= 0x01;
  ASSERT_OK(WriteFileAtomically(damaged, bytes));
  std::ofstream(root_ + "/datasets/broken.dataset") << "truncated";
  fs::create_directories(root_ + "/tmp/half-published");
  std::ofstream(root_ + "/datasets/e.dataset.tmp-1-0") << "interrupted write";
  fs::create_directories(root_ + "/jobs");
  v1::TrainingJob running;
  running.set_job_id("job-running");
  running.set_state(v1::JOB_STATE_RUNNING);
  ArchiveWriter writer("invnet.job");
  writer.PutString("job", running.SerializeAsString());
  ASSERT_OK(WriteFileAtomically(root_ + "/jobs/job-running.job", writer.Finish()));
  const auto before = Snapshot(root_);

  ASSERT_OK_AND_ASSIGN(RepositoryReport report, CheckRepository(root_));
  EXPECT_FALSE(report.healthy());
  EXPECT_EQ(report.model_versions, 1);
  EXPECT_EQ(report.datasets, 1);
  EXPECT_EQ(report.jobs, 1);
  const std::string text = FormatRepositoryReport(root_, report);
  EXPECT_THAT(text, HasSubstr("DAMAGED   models/damaged/1: DATA_LOSS"));
  EXPECT_THAT(text, HasSubstr("DAMAGED   datasets/broken.dataset"));
  EXPECT_THAT(text, HasSubstr("LEFTOVER  tmp/half-published"));
  EXPECT_THAT(text, HasSubstr("LEFTOVER  datasets/e.dataset.tmp-1-0"));
  EXPECT_THAT(text, HasSubstr("LEFTOVER  jobs/job-running.job: job job-running was running"));
  EXPECT_THAT(text, HasSubstr("DAMAGED: 2 entries"));
  EXPECT_EQ(Snapshot(root_), before) << "the check wrote, moved or removed something";

  EXPECT_THAT(CheckRepository(root_ + "/nothing-here"), StatusIs(absl::StatusCode::kNotFound));
}

}  // namespace
}  // namespace invnet::server
