#include "client/progress.h"

#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace invnet::client {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

v1::TrainingJob Job(v1::JobState state, int64_t step, int64_t total) {
  v1::TrainingJob job;
  job.set_job_id("j1");
  job.set_state(state);
  job.set_step(step);
  job.set_total_steps(total);
  job.set_loss(0.0123456);
  job.set_learning_rate(1e-3);
  job.set_eta_seconds(65);
  job.set_elapsed_seconds(30);
  return job;
}

TEST(ProgressBarTest, FillsInProportionAndClamps) {
  EXPECT_EQ(RenderProgressBar(0, 100, 10), "[----------]");
  EXPECT_EQ(RenderProgressBar(45, 100, 10), "[####------]");
  EXPECT_EQ(RenderProgressBar(100, 100, 10), "[##########]");
  EXPECT_EQ(RenderProgressBar(150, 100, 4), "[####]");
  EXPECT_EQ(RenderProgressBar(5, 0, 4), "[----]");
}

TEST(DescribeProgressTest, ShowsStepLossAndEta) {
  EXPECT_EQ(DescribeProgress(Job(v1::JOB_STATE_RUNNING, 1350, 3000)),
            "running  step 1350/3000 (45%)  loss 0.01235  lr 0.001  eta 1m05s");
  v1::TrainingJob done = Job(v1::JOB_STATE_SUCCEEDED, 3000, 3000);
  done.mutable_last_validation()->set_mse(0.5);
  EXPECT_EQ(DescribeProgress(done),
            "succeeded  step 3000/3000 (100%)  loss 0.01235  lr 0.001  val_mse 0.5  elapsed 30s");
  EXPECT_EQ(DescribeProgress(Job(v1::JOB_STATE_QUEUED, 0, 10)),
            "queued  step 0/10 (0%)  elapsed 30s");
}

TEST(ProgressPrinterTest, InteractiveRedrawsOneLine) {
  std::ostringstream out;
  {
    ProgressPrinter printer(&out, /*interactive=*/true, 10);
    printer.Update(Job(v1::JOB_STATE_RUNNING, 10, 100));
    printer.Update(Job(v1::JOB_STATE_RUNNING, 50, 100));
    printer.Finish();
    printer.Finish();  // idempotent
  }
  const std::string text = out.str();
  EXPECT_EQ(text.rfind("\r[#---------] running", 0), 0u);
  EXPECT_THAT(text, HasSubstr("\r[#####-----] running  step 50/100"));
  EXPECT_THAT(text, HasSubstr("\x1b[K"));
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 1);
  EXPECT_EQ(text.back(), '\n');
}

TEST(ProgressPrinterTest, PlainPrintsOnStateChangesDecilesAndValidations) {
  std::ostringstream out;
  ProgressPrinter printer(&out, /*interactive=*/false);
  printer.Update(Job(v1::JOB_STATE_QUEUED, 0, 100));
  printer.Update(Job(v1::JOB_STATE_RUNNING, 1, 100));   // state change
  printer.Update(Job(v1::JOB_STATE_RUNNING, 5, 100));   // same decile: nothing
  printer.Update(Job(v1::JOB_STATE_RUNNING, 9, 100));   // nothing
  printer.Update(Job(v1::JOB_STATE_RUNNING, 10, 100));  // next decile
  v1::TrainingJob validated = Job(v1::JOB_STATE_RUNNING, 12, 100);
  validated.mutable_last_validation()->set_step(12);
  printer.Update(validated);  // new validation
  printer.Update(validated);  // nothing new
  printer.Update(Job(v1::JOB_STATE_SUCCEEDED, 100, 100));
  printer.Finish();
  const std::vector<std::string> lines = absl::StrSplit(out.str(), '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 5u) << out.str();
  EXPECT_EQ(lines[0], "job j1: queued  step 0/100 (0%)  elapsed 30s");
  EXPECT_THAT(lines[1], HasSubstr("step 1/100"));
  EXPECT_THAT(lines[2], HasSubstr("step 10/100"));
  EXPECT_THAT(lines[3], HasSubstr("val_mse"));
  EXPECT_THAT(lines[4], HasSubstr("succeeded"));
  EXPECT_THAT(out.str(), Not(HasSubstr("\r")));
}

TEST(DescribeJobLineTest, StateStepsLossValidationAndEta) {
  v1::TrainingJob running = Job(v1::JOB_STATE_RUNNING, 1350, 3000);
  running.mutable_last_validation()->set_mse(0.2412);
  EXPECT_EQ(DescribeJobLine(running),
            "running    1350/3000  loss 0.01235  val_mse 0.2412  eta 1m05s");
  EXPECT_EQ(DescribeJobLine(Job(v1::JOB_STATE_QUEUED, 0, 10)), "queued     0/10");
  v1::TrainingJob done = Job(v1::JOB_STATE_SUCCEEDED, 10, 10);
  done.set_published_version(3);
  EXPECT_EQ(DescribeJobLine(done), "succeeded  10/10  loss 0.01235  took 30s -> version 3");
  v1::TrainingJob failed = Job(v1::JOB_STATE_FAILED, 5, 10);
  failed.set_error("loss became NaN");
  EXPECT_EQ(DescribeJobLine(failed), "failed     5/10  loss 0.01235  (loss became NaN)");
}

TEST(MultiJobProgressTest, InteractiveRedrawsTheBlockInPlace) {
  std::ostringstream out;
  {
    MultiJobProgress progress(&out, /*interactive=*/true, {"exp-a", "exp-long"});
    progress.SetWaiting(1, "server busy");
    progress.Update(0, Job(v1::JOB_STATE_RUNNING, 10, 100));
    progress.Flush();
    progress.Flush();  // nothing changed: nothing drawn
    progress.Update(1, Job(v1::JOB_STATE_RUNNING, 50, 100));
    progress.Flush();
  }  // the destructor finishes
  const std::string text = out.str();
  // First draw: two lines; second draw: cursor up two lines, then both lines again.
  EXPECT_EQ(text,
            "\rexp-a     running    10/100  loss 0.01235  eta 1m05s\x1b[K\n"
            "\rexp-long  waiting (server busy)\x1b[K\n"
            "\x1b[2A"
            "\rexp-a     running    10/100  loss 0.01235  eta 1m05s\x1b[K\n"
            "\rexp-long  running    50/100  loss 0.01235  eta 1m05s\x1b[K\n");
}

TEST(MultiJobProgressTest, InteractiveLinesNeverWrap) {
  std::ostringstream out;
  MultiJobProgress progress(&out, /*interactive=*/true, {"exp-a"}, /*columns=*/20);
  progress.Update(0, Job(v1::JOB_STATE_RUNNING, 10, 100));
  progress.Finish();
  EXPECT_EQ(out.str(), "\rexp-a  running    1\x1b[K\n");  // 19 characters
}

TEST(MultiJobProgressTest, PlainPrintsLabelledLinesWhenSomethingHappens) {
  std::ostringstream out;
  MultiJobProgress progress(&out, /*interactive=*/false, {"exp-a", "exp-b"});
  progress.SetWaiting(1, "server busy");
  progress.SetWaiting(1, "server busy");  // no change: nothing
  progress.Update(0, Job(v1::JOB_STATE_RUNNING, 1, 100));
  progress.Update(0, Job(v1::JOB_STATE_RUNNING, 5, 100));  // same decile: nothing
  progress.Update(1, Job(v1::JOB_STATE_QUEUED, 0, 100));
  progress.Update(0, Job(v1::JOB_STATE_RUNNING, 20, 100));
  progress.Update(0, Job(v1::JOB_STATE_SUCCEEDED, 100, 100));
  progress.Flush();
  progress.Finish();
  const std::vector<std::string> lines = absl::StrSplit(out.str(), '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 5u) << out.str();
  EXPECT_EQ(lines[0], "exp-b: waiting (server busy)");
  EXPECT_EQ(lines[1], "exp-a: running    1/100  loss 0.01235  eta 1m05s");
  EXPECT_EQ(lines[2], "exp-b: queued     0/100");
  EXPECT_THAT(lines[3], HasSubstr("exp-a: running    20/100"));
  EXPECT_THAT(lines[4], HasSubstr("exp-a: succeeded"));
  EXPECT_THAT(out.str(), Not(HasSubstr("\x1b")));
}

}  // namespace
}  // namespace invnet::client
