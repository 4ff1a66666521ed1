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

}  // namespace invnet::client

#endif  // INVNET_CLIENT_PROGRESS_H_
