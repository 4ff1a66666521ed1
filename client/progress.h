#ifndef INVNET_CLIENT_PROGRESS_H_
#define INVNET_CLIENT_PROGRESS_H_

// Training progress for people: a live bar redrawn in place on a terminal, or plain lines for
// logs and pipes.
//
// Not thread-safe: feed one ProgressPrinter from one thread (WatchTrainingJob's callback runs
// on the calling thread).

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "invnet/v1/training_service.pb.h"

namespace invnet::client {

// "[##########----------]": `width` cells, filled in proportion to step / total (empty when
// total <= 0, clamped to [0, 1]).
std::string RenderProgressBar(int64_t step, int64_t total, int width);

// "running  step 1350/3000 (45%)  loss 0.01234  lr 0.001  eta 1m05s", plus the last
// validation's MSE when there is one.
std::string DescribeProgress(const v1::TrainingJob& job);

class ProgressPrinter {
 public:
  // `out` must outlive the printer. `interactive`: redraw one line with '\r' (use it only when
  // `out` is a terminal); otherwise print a line when the state changes, when a new validation
  // arrives, and each time another 10% of the steps is done.
  ProgressPrinter(std::ostream* out, bool interactive, int bar_width = 30);
  ~ProgressPrinter() { Finish(); }

  ProgressPrinter(const ProgressPrinter&) = delete;
  ProgressPrinter& operator=(const ProgressPrinter&) = delete;

  void Update(const v1::TrainingJob& job);
  // Ends the live line so that later output starts on a fresh line. Idempotent.
  void Finish();

 private:
  std::ostream* out_;
  bool interactive_;
  int bar_width_;
  bool line_open_ = false;
  bool first_update_ = true;
  v1::JobState last_state_ = v1::JOB_STATE_UNSPECIFIED;
  int64_t last_decile_ = -1;
  int64_t last_validation_step_ = -1;
};

// One job as a line of a multi-job display: state, step/total, loss, last validation MSE and
// ETA (elapsed time once finished; the error of a failed job), e.g.
// "running    1350/3000  loss 0.02131  val_mse 0.2412  eta 25s".
std::string DescribeJobLine(const v1::TrainingJob& job);

// Progress of several jobs at once (`invnet experiment`): one line per job, in a fixed order.
// Lines are labelled (the model names) and aligned. Not thread-safe, like ProgressPrinter.
class MultiJobProgress {
 public:
  // `out` must outlive the display. `interactive` (a terminal): Flush() redraws the whole block
  // of lines in place (ANSI cursor-up and clear-line), each line cut to `columns` - 1
  // characters when `columns` > 0 (the terminal's width: a line that wrapped would break the
  // redraw). Otherwise a plain line "LABEL: ..." is written when a job is waiting or
  // submitted, changes state, gets a new validation or passes another 10% of its steps, so
  // logs stay short.
  MultiJobProgress(std::ostream* out, bool interactive, std::vector<std::string> labels,
                   int columns = 0);
  ~MultiJobProgress() { Finish(); }

  MultiJobProgress(const MultiJobProgress&) = delete;
  MultiJobProgress& operator=(const MultiJobProgress&) = delete;

  // Line `index` has no job yet: "waiting (NOTE)". Precondition: index < number of labels.
  void SetWaiting(size_t index, const std::string& note);
  // The latest state of line `index`'s job.
  void Update(size_t index, const v1::TrainingJob& job);
  // Interactive: redraws the block when anything changed since the last Flush. Plain: no-op
  // (lines are written as they happen).
  void Flush();
  // Final redraw; later output starts below the block. Idempotent.
  void Finish();

 private:
  struct Line {
    std::string text;
    bool has_job = false;
    v1::JobState state = v1::JOB_STATE_UNSPECIFIED;
    int64_t decile = -1;
    int64_t validation_step = -1;
  };
  void Print(size_t index);

  std::ostream* out_;
  bool interactive_;
  std::vector<std::string> labels_;
  int columns_;
  std::vector<Line> lines_;
  size_t label_width_ = 0;
  bool dirty_ = true;
  bool drawn_ = false;
  bool finished_ = false;
};

}  // namespace invnet::client

#endif  // INVNET_CLIENT_PROGRESS_H_
