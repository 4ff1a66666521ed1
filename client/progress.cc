#include "client/progress.h"

#include <algorithm>
#include <string>

#include "absl/strings/str_cat.h"
#include "client/format.h"

namespace invnet::client {

std::string RenderProgressBar(int64_t step, int64_t total, int width) {
  double fraction = total > 0 ? static_cast<double>(step) / static_cast<double>(total) : 0.0;
  fraction = std::clamp(fraction, 0.0, 1.0);
  const int filled = static_cast<int>(fraction * width);
  return absl::StrCat("[", std::string(filled, '#'), std::string(width - filled, '-'), "]");
}

std::string DescribeProgress(const v1::TrainingJob& job) {
  std::string text = JobStateName(job.state());
  if (job.total_steps() > 0) {
    const int64_t percent = std::clamp<int64_t>(job.step() * 100 / job.total_steps(), 0, 100);
    absl::StrAppend(&text, "  step ", job.step(), "/", job.total_steps(), " (", percent, "%)");
  }
  if (job.step() > 0) {
    absl::StrAppend(&text, "  loss ", FormatNumber(job.loss()), "  lr ",
                    FormatNumber(job.learning_rate()));
  }
  if (job.has_last_validation()) {
    absl::StrAppend(&text, "  val_mse ", FormatNumber(job.last_validation().mse()));
  }
  if (job.state() == v1::JOB_STATE_RUNNING && job.eta_seconds() > 0) {
    absl::StrAppend(&text, "  eta ", FormatDuration(job.eta_seconds()));
  } else if (job.elapsed_seconds() > 0) {
    absl::StrAppend(&text, "  elapsed ", FormatDuration(job.elapsed_seconds()));
  }
  return text;
}

ProgressPrinter::ProgressPrinter(std::ostream* out, bool interactive, int bar_width)
    : out_(out), interactive_(interactive), bar_width_(bar_width) {}

void ProgressPrinter::Update(const v1::TrainingJob& job) {
  if (interactive_) {
    // '\r' returns to the line start; "\x1b[K" clears what a longer previous line left behind.
    *out_ << "\r" << RenderProgressBar(job.step(), job.total_steps(), bar_width_) << " "
          << DescribeProgress(job) << "\x1b[K" << std::flush;
    line_open_ = true;
    return;
  }
  const int64_t decile = job.total_steps() > 0 ? job.step() * 10 / job.total_steps() : 0;
  const int64_t validation_step = job.has_last_validation() ? job.last_validation().step() : -1;
  const bool changed = first_update_ || job.state() != last_state_ || decile != last_decile_ ||
                       validation_step != last_validation_step_;
  first_update_ = false;
  last_state_ = job.state();
  last_decile_ = decile;
  last_validation_step_ = validation_step;
  if (changed) *out_ << "job " << job.job_id() << ": " << DescribeProgress(job) << "\n";
}

void ProgressPrinter::Finish() {
  if (line_open_) {
    *out_ << "\n" << std::flush;
    line_open_ = false;
  }
}

}  // namespace invnet::client
