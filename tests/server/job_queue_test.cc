// The job queue of JobManager (job_manager.h): --max_jobs workers run jobs; up to
// --max_queued_jobs more wait QUEUED and start in submission order; beyond that Submit is
// refused; a queued job cancels at once and never trains; a queued job does not survive a
// restart (a clean shutdown cancels it, a crash's leftover record is marked FAILED). And Watch,
// which streams a job's changes to WatchTrainingJob.

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <ATen/ATen.h>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/dataset_store.h"
#include "server/job_manager.h"
#include "server/model_repository.h"
#include "tests/testing/scratch_directory.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/train_requests.h"

namespace invnet::server {
namespace {

using ::invnet::testing::SmallTrainRequest;
using ::invnet::testing::StatusIs;
using ::testing::HasSubstr;

class JobQueueTest : public ::testing::Test {
 protected:
  void SetUp() override {
    models_ = ModelRepository::Open(root_).value();
    datasets_ = DatasetStore::Open(root_).value();
  }
  void TearDown() override {
    jobs_.reset();  // Shutdown: cancels and joins before the stores go
  }

  // One worker and a queue of two.
  void StartManager(const std::string& root) {
    JobManagerOptions options;
    options.max_concurrent_jobs = 1;
    options.max_queued_jobs = 2;
    options.progress_interval = absl::Milliseconds(10);
    jobs_ = JobManager::Create(root, models_.get(), datasets_.get(), options).value();
  }

  v1::TrainingJob Submit(const std::string& model, int64_t steps) {
    absl::StatusOr<v1::TrainingJob> job =
        jobs_->Submit(SmallTrainRequest(model, v1::LOSS_APPROXIMATION, steps));
    EXPECT_TRUE(job.ok()) << job.status();
    return job.value_or(v1::TrainingJob());
  }

  v1::JobState StateOf(const std::string& id) { return jobs_->Get(id).value().state(); }

  // Waits (at most 60 s) until the job is in `state`.
  void AwaitState(const std::string& id, v1::JobState state) {
    const absl::Time deadline = absl::Now() + absl::Seconds(60);
    while (StateOf(id) != state && absl::Now() < deadline) {
      jobs_->WaitForChange(id, -1, absl::Now() + absl::Milliseconds(50)).IgnoreError();
      absl::SleepFor(absl::Milliseconds(5));
    }
    ASSERT_EQ(v1::JobState_Name(StateOf(id)), v1::JobState_Name(state)) << "job " << id;
  }

  invnet::testing::ScratchDirectory scratch_{"job_queue_test"};
  const std::string root_ = scratch_.path();
  std::unique_ptr<ModelRepository> models_;
  std::unique_ptr<DatasetStore> datasets_;
  std::unique_ptr<JobManager> jobs_;
};

constexpr int64_t kForever = 1000000;  // steps: runs until cancelled

TEST_F(JobQueueTest, JobsWaitQueuedAndStartInSubmissionOrder) {
  StartManager(root_);
  const v1::TrainingJob running = Submit("first", kForever);
  AwaitState(running.job_id(), v1::JOB_STATE_RUNNING);
  const v1::TrainingJob second = Submit("second", kForever);
  const v1::TrainingJob third = Submit("third", 5);
  EXPECT_EQ(second.state(), v1::JOB_STATE_QUEUED);
  EXPECT_EQ(third.state(), v1::JOB_STATE_QUEUED);
  EXPECT_EQ(jobs_->active_jobs(), 3);
  // One worker busy and two waiting: the next is refused, naming both flags.
  EXPECT_THAT(jobs_->Submit(SmallTrainRequest("fourth", v1::LOSS_APPROXIMATION, 5)),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("--max_queued_jobs")));

  // The first's end starts the second (submitted first), while the third still waits.
  ASSERT_OK(jobs_->Cancel(running.job_id()).status());
  AwaitState(second.job_id(), v1::JOB_STATE_RUNNING);
  EXPECT_EQ(StateOf(third.job_id()), v1::JOB_STATE_QUEUED);
  ASSERT_OK(jobs_->Cancel(second.job_id()).status());
  AwaitState(third.job_id(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(jobs_->Get(third.job_id())->published_version(), 1);
  EXPECT_EQ(jobs_->active_jobs(), 0);
}

TEST_F(JobQueueTest, AQueuedJobCancelsAtOnceAndNeverTrains) {
  StartManager(root_);
  const v1::TrainingJob running = Submit("first", kForever);
  const v1::TrainingJob queued = Submit("second", 5);
  ASSERT_OK_AND_ASSIGN(v1::TrainingJob cancelled, jobs_->Cancel(queued.job_id()));
  EXPECT_EQ(cancelled.state(), v1::JOB_STATE_CANCELLED);
  EXPECT_THAT(cancelled.error(), HasSubstr("cancelled by request while the job was queued"));
  EXPECT_EQ(cancelled.step(), 0);
  EXPECT_THAT(jobs_->Cancel(queued.job_id()),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("already finished")));
  // Its place in the queue is free again: two more fit.
  EXPECT_EQ(jobs_->active_jobs(), 1);
  Submit("third", 5);
  Submit("fourth", 5);
  ASSERT_OK(jobs_->Cancel(running.job_id()).status());
  // Never started, so nothing of it was ever published.
  EXPECT_THAT(models_->Get("second", 0).status(), StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(JobQueueTest, AQueuedJobFailsWhenItsDatasetChangedWhileItWaited) {
  StartManager(root_);
  auto save = [this](float scale) {
    ASSERT_OK(datasets_->Reserve("signals"));
    ASSERT_OK(datasets_->Save("signals", scale * at::randn({100, 2})).status());
  };
  save(1.0f);
  const v1::TrainingJob running = Submit("first", kForever);
  v1::TrainRequest request = SmallTrainRequest("on-data", v1::LOSS_APPROXIMATION, 5);
  request.clear_preset();
  request.mutable_problem()->mutable_operator_()->mutable_identity()->set_dim(2);
  request.mutable_problem()->set_noise_level(0.1);
  request.mutable_problem()->set_dataset("signals");
  ASSERT_OK_AND_ASSIGN(v1::TrainingJob queued, jobs_->Submit(request));
  EXPECT_EQ(queued.state(), v1::JOB_STATE_QUEUED);
  // Replaced (same name and shape, other values) before the job starts.
  ASSERT_OK(datasets_->Delete("signals"));
  save(2.0f);
  ASSERT_OK(jobs_->Cancel(running.job_id()).status());
  AwaitState(queued.job_id(), v1::JOB_STATE_FAILED);
  EXPECT_THAT(jobs_->Get(queued.job_id())->error(), HasSubstr("dataset 'signals' has changed since the job was submitted"));
}

TEST_F(JobQueueTest, QueuedJobsDoNotSurviveARestart) {
  StartManager(root_);
  const v1::TrainingJob running = Submit("first", kForever);
  AwaitState(running.job_id(), v1::JOB_STATE_RUNNING);
  const v1::TrainingJob queued = Submit("second", 5);
  // A crash now would leave the queued job's record as it is on disk: copy it to a second
  // repository and start a manager there, as the next start after a crash would.
  const std::string crashed = root_ + "/crashed";
  std::filesystem::create_directories(crashed + "/jobs");
  // The records one by one: copying the directory would race with the running job's progress
  // writes (its temporary file can vanish between listing and copying).
  for (const v1::TrainingJob* job : {&running, &queued}) {
    const std::string record = "/jobs/" + job->job_id() + ".job";
    std::filesystem::copy_file(root_ + record, crashed + record);
  }
  // A clean shutdown cancels the queued job and says why.
  jobs_.reset();
  StartManager(root_);
  ASSERT_OK_AND_ASSIGN(v1::TrainingJob after_shutdown, jobs_->Get(queued.job_id()));
  EXPECT_EQ(after_shutdown.state(), v1::JOB_STATE_CANCELLED);
  EXPECT_THAT(after_shutdown.error(), HasSubstr("server shut down while the job was queued"));
  jobs_.reset();
  StartManager(crashed);
  ASSERT_OK_AND_ASSIGN(v1::TrainingJob after_crash, jobs_->Get(queued.job_id()));
  EXPECT_EQ(after_crash.state(), v1::JOB_STATE_FAILED);
  EXPECT_THAT(after_crash.error(), HasSubstr("server restarted"));
}

// --- Watch: the WatchTrainingJob stream without gRPC ----------------------------------------

TEST_F(JobQueueTest, WatchSendsEveryChangeOfAQueuedJobUntilItFinishes) {
  StartManager(root_);
  const v1::TrainingJob running = Submit("first", kForever);
  const v1::TrainingJob queued = Submit("second", 20);
  std::vector<v1::JobState> states;
  absl::Notification first_update;  // the watcher has seen the job queued
  std::thread watcher([&] {
    EXPECT_OK(jobs_->Watch(
        queued.job_id(),
        [&](const v1::TrainingJob& job) {
          states.push_back(job.state());
          if (!first_update.HasBeenNotified()) first_update.Notify();
          return true;
        },
        {}, absl::Milliseconds(20)));
  });
  AwaitState(running.job_id(), v1::JOB_STATE_RUNNING);
  // Cancelled only once the watcher has its first update: else the second job may already run.
  first_update.WaitForNotification();
  ASSERT_OK(jobs_->Cancel(running.job_id()).status());
  watcher.join();
  ASSERT_GE(states.size(), 2u);
  EXPECT_EQ(v1::JobState_Name(states.front()), "JOB_STATE_QUEUED");
  EXPECT_EQ(v1::JobState_Name(states.back()), "JOB_STATE_SUCCEEDED");
  EXPECT_NE(std::find(states.begin(), states.end(), v1::JOB_STATE_RUNNING), states.end());
}

TEST_F(JobQueueTest, WatchStopsWhenTheCallerLeavesOrTheReceiverIsGone) {
  StartManager(root_);
  const v1::TrainingJob running = Submit("first", kForever);
  int sent = 0;
  const auto count = [&](const v1::TrainingJob&) { return ++sent > 0; };
  // The caller left: noticed at the next poll, although the job never changes again (a Watch
  // that ignored `cancelled` would hang here until ctest's timeout).
  std::atomic<bool> left{false};
  std::thread leaver([&] {
    absl::SleepFor(absl::Milliseconds(100));
    left = true;
  });
  const absl::Time start = absl::Now();
  EXPECT_THAT(jobs_->Watch(running.job_id(), count, [&] { return left.load(); }, absl::Milliseconds(20)),
              StatusIs(absl::StatusCode::kCancelled, HasSubstr("cancelled by the client")));
  leaver.join();
  EXPECT_LT(absl::Now() - start, absl::Seconds(30));
  EXPECT_GE(sent, 1);  // the record as it was, first
  // The receiver is gone: the first failed send ends the watch.
  EXPECT_THAT(jobs_->Watch(
                  running.job_id(), [](const v1::TrainingJob&) { return false; }, {},
                  absl::Milliseconds(20)),
              StatusIs(absl::StatusCode::kCancelled, HasSubstr("went away")));
  EXPECT_THAT(jobs_->Watch("no-such-job", count, {}), StatusIs(absl::StatusCode::kNotFound));
  ASSERT_OK(jobs_->Cancel(running.job_id()).status());
}

}  // namespace
}  // namespace invnet::server
