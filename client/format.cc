#include "client/format.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "proto/timestamp.h"

namespace invnet::client {
namespace {

// "JOB_STATE_RUNNING" -> "running".
std::string EnumSuffix(const std::string& full_name, absl::string_view prefix) {
  if (full_name.empty()) return "unknown";
  return absl::AsciiStrToLower(absl::StripPrefix(full_name, prefix));
}

}  // namespace

void Table::Print(std::ostream& out) const {
  std::vector<size_t> widths(header_.size(), 0);
  auto measure = [&widths](const std::vector<std::string>& row) {
    if (row.size() > widths.size()) widths.resize(row.size(), 0);
    for (size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
  };
  measure(header_);
  for (const auto& row : rows_) measure(row);
  auto print = [&](const std::vector<std::string>& row) {
    std::string line;
    for (size_t i = 0; i < widths.size(); ++i) {
      const std::string cell = i < row.size() ? row[i] : "";
      if (i > 0) line += "  ";
      line += cell;
      line.append(widths[i] - cell.size(), ' ');
    }
    out << absl::StripTrailingAsciiWhitespace(line) << "\n";
  };
  print(header_);
  for (const auto& row : rows_) print(row);
}

std::string FormatDuration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "-";
  const int64_t s = static_cast<int64_t>(std::llround(seconds));
  if (s < 60) return absl::StrCat(s, "s");
  if (s < 3600) return absl::StrFormat("%dm%02ds", s / 60, s % 60);
  if (s < 86400) return absl::StrFormat("%dh%02dm", s / 3600, (s % 3600) / 60);
  return absl::StrFormat("%dd%02dh", s / 86400, (s % 86400) / 3600);
}

std::string FormatBytes(int64_t bytes) {
  if (bytes < 1024) return absl::StrCat(bytes, " B");
  const char* units[] = {"KiB", "MiB", "GiB", "TiB"};
  double value = static_cast<double>(bytes);
  int unit = -1;
  while (value >= 1024 && unit < 3) {
    value /= 1024;
    ++unit;
  }
  return absl::StrFormat("%.1f %s", value, units[unit]);
}

std::string FormatTimestamp(const google::protobuf::Timestamp& timestamp) {
  if (timestamp.seconds() == 0 && timestamp.nanos() == 0) return "-";
  return absl::FormatTime("%Y-%m-%d %H:%M:%S", FromProtoTimestamp(timestamp), absl::UTCTimeZone());
}

std::string FormatNumber(double value) {
  if (std::isnan(value)) return "nan";
  return absl::StrFormat("%.4g", value);
}

std::string JobStateName(v1::JobState state) {
  return EnumSuffix(v1::JobState_Name(state), "JOB_STATE_");
}

std::string LossName(v1::Loss loss) {
  // The one spelling the CLI prints (the README's); the enum's would be "log_det".
  if (loss == v1::LOSS_LOG_DET) return "log-det";
  return EnumSuffix(v1::Loss_Name(loss), "LOSS_");
}

absl::StatusOr<v1::Loss> ParseLossName(absl::string_view text) {
  // Case, a "LOSS_" prefix and the separators '-' and '_' do not matter: log-det, logdet,
  // log_det and LOSS_LOG_DET are one loss.
  std::string name = absl::AsciiStrToLower(absl::StripAsciiWhitespace(text));
  if (absl::StartsWith(name, "loss_")) name.erase(0, 5);
  name.erase(std::remove_if(name.begin(), name.end(), [](char c) { return c == '-' || c == '_'; }),
             name.end());
  for (v1::Loss loss :
       {v1::LOSS_APPROXIMATION, v1::LOSS_RECONSTRUCTION, v1::LOSS_LOG_DET, v1::LOSS_DIVERGENCE}) {
    std::string candidate = LossName(loss);
    candidate.erase(std::remove(candidate.begin(), candidate.end(), '-'), candidate.end());
    if (name == candidate) return loss;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "'", text, "' is not one of approximation, reconstruction, log-det, divergence"));
}

std::string TargetSpaceName(v1::TargetSpace space) {
  return EnumSuffix(v1::TargetSpace_Name(space), "TARGET_SPACE_");
}

std::string ActivationName(v1::Activation activation) {
  return EnumSuffix(v1::Activation_Name(activation), "ACTIVATION_");
}

std::string OperatorSummary(const v1::Operator& op) {
  switch (op.kind_case()) {
    case v1::Operator::kIdentity:
      return absl::StrCat("identity(n=", op.identity().dim(), ")");
    case v1::Operator::kDense: {
      const auto& shape = op.dense().matrix().shape();
      if (shape.size() == 2) return absl::StrCat("dense(", shape[0], "x", shape[1], ")");
      return "dense(?)";
    }
    case v1::Operator::kConvolution: {
      const v1::ConvolutionOperator& conv = op.convolution();
      const std::string boundary = conv.boundary() == v1::BOUNDARY_ZERO ? "zero" : "periodic";
      return absl::StrCat("convolution(n=", conv.dim(), ", ", conv.kernel_size(), " taps, ",
                          boundary, ")");
    }
    case v1::Operator::KIND_NOT_SET:
      break;
  }
  return "-";
}

std::string SignalsSummary(const v1::Problem& problem) {
  switch (problem.signals_case()) {
    case v1::Problem::kPrior:
      return absl::StrCat("gaussian mixture (", problem.prior().weights_size(), " components)");
    case v1::Problem::kDataset:
      return absl::StrCat("dataset '", problem.dataset(), "'");
    case v1::Problem::SIGNALS_NOT_SET:
      break;
  }
  return "-";
}

}  // namespace invnet::client
