#ifndef INVNET_CLIENT_FORMAT_H_
#define INVNET_CLIENT_FORMAT_H_

// Human-readable text for the CLI: aligned tables and short forms of durations, sizes, times
// and enum values. Pure functions of their arguments (thread-safe).

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/timestamp.pb.h"
#include "invnet/v1/model.pb.h"
#include "invnet/v1/problem.pb.h"
#include "invnet/v1/training_service.pb.h"

namespace invnet::client {

// A text table: a header row, then rows, each column padded to its widest cell and separated
// by two spaces; trailing spaces are trimmed. A row with fewer cells than the header is padded
// with empty cells.
class Table {
 public:
  explicit Table(std::vector<std::string> header) : header_(std::move(header)) {}
  void AddRow(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  size_t num_rows() const { return rows_.size(); }
  void Print(std::ostream& out) const;

 private:
  std::vector<std::string> header_;
  std::vector<std::vector<std::string>> rows_;
};

// "42s", "3m05s", "1h02m", "2d03h"; "-" for a negative or non-finite value.
std::string FormatDuration(double seconds);
// "512 B", "1.5 KiB", "12.0 MiB", "3.2 GiB".
std::string FormatBytes(int64_t bytes);
// UTC "2024-05-01 12:34:56"; "-" when unset (0).
std::string FormatTimestamp(const google::protobuf::Timestamp& timestamp);
// A double with up to 4 significant digits ("0.01234", "1.5e-06", "nan").
std::string FormatNumber(double value);

// Lower-case names without the enum prefix: "running", "normal", "elu", ...; losses are
// "approximation", "reconstruction", "log-det" and "divergence" (the CLI's one spelling).
std::string JobStateName(v1::JobState state);
std::string LossName(v1::Loss loss);
// The loss a user means: LossName()'s spelling or any other common one (case-insensitive, with
// or without "LOSS_", '-' or '_': "logdet", "log_det", "LOSS_LOG_DET"). INVALID_ARGUMENT
// listing the four otherwise (the message does not name a flag).
absl::StatusOr<v1::Loss> ParseLossName(absl::string_view text);
std::string TargetSpaceName(v1::TargetSpace space);
std::string ActivationName(v1::Activation activation);
// "identity(n=2)", "dense(3x2)", "convolution(n=64, 5 taps, zero)".
std::string OperatorSummary(const v1::Operator& op);
// "gaussian mixture (2 components)" or "dataset 'name'".
std::string SignalsSummary(const v1::Problem& problem);

}  // namespace invnet::client

#endif  // INVNET_CLIENT_FORMAT_H_
