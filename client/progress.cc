#include "client/progress.h"

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
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

std::string DescribeJobLine(const v1::TrainingJob& job) {
  std::string text = absl::StrFormat("%-9s  %s", JobStateName(job.state()),
                                     absl::StrCat(job.step(), "/", job.total_steps()));
  if (job.step() > 0) absl::StrAppend(&text, "  loss ", FormatNumber(job.loss()));
  if (job.has_last_validation()) {
    absl::StrAppend(&text, "  val_mse ", FormatNumber(job.last_validation().mse()));
  }
  switch (job.state()) {
    case v1::JOB_STATE_RUNNING:
      if (job.eta_seconds() > 0) {
        absl::StrAppend(&text, "  eta ", FormatDuration(job.eta_seconds()));
      }
      break;
    case v1::JOB_STATE_SUCCEEDED:
      absl::StrAppend(&text, "  took ", FormatDuration(job.elapsed_seconds()), " -> version ",
                      job.published_version());
      break;
    case v1::JOB_STATE_FAILED:
    case v1::JOB_STATE_CANCELLED:
      if (!job.error().empty()) absl::StrAppend(&text, "  (", job.error(), ")");
      break;
    default:
      break;
  }
  return text;
}

MultiJobProgress::MultiJobProgress(std::ostream* out, bool interactive,
                                   std::vector<std::string> labels, int columns)
    : out_(out),
      interactive_(interactive),
      labels_(std::move(labels)),
      columns_(columns),
      lines_(labels_.size()) {
  for (const std::string& label : labels_) label_width_ = std::max(label_width_, label.size());
  for (Line& line : lines_) line.text = "waiting";
}

void MultiJobProgress::SetWaiting(size_t index, const std::string& note) {
  Line& line = lines_[index];
  const std::string text = note.empty() ? "waiting" : absl::StrCat("waiting (", note, ")");
  if (text == line.text) return;
  line.text = text;
  dirty_ = true;
  if (!interactive_) Print(index);
}

void MultiJobProgress::Update(size_t index, const v1::TrainingJob& job) {
  Line& line = lines_[index];
  const std::string text = DescribeJobLine(job);
  if (text != line.text) dirty_ = true;
  line.text = text;
  const int64_t decile = job.total_steps() > 0 ? job.step() * 10 / job.total_steps() : 0;
  const int64_t validation_step = job.has_last_validation() ? job.last_validation().step() : -1;
  const bool changed = !line.has_job || job.state() != line.state || decile != line.decile ||
                       validation_step != line.validation_step;
  line.has_job = true;
  line.state = job.state();
  line.decile = decile;
  line.validation_step = validation_step;
  if (!interactive_ && changed) Print(index);
}

void MultiJobProgress::Print(size_t index) {
  *out_ << labels_[index] << ": " << lines_[index].text << "\n" << std::flush;
}

void MultiJobProgress::Flush() {
  if (!interactive_ || !dirty_ || finished_) return;
  // Back to the block's first line, then each line rewritten and cleared to its end.
  if (drawn_) *out_ << "\x1b[" << lines_.size() << "A";
  for (size_t i = 0; i < lines_.size(); ++i) {
    std::string line = absl::StrFormat("%-*s  %s", label_width_, labels_[i], lines_[i].text);
    if (columns_ > 1 && line.size() >= static_cast<size_t>(columns_)) line.resize(columns_ - 1);
    *out_ << "\r" << line << "\x1b[K\n";
  }
  *out_ << std::flush;
  drawn_ = true;
  dirty_ = false;
}

void MultiJobProgress::Finish() {
  if (finished_) return;
  Flush();
  finished_ = true;
}

}  // namespace invnet::client
