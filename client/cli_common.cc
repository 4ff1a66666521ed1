// Helpers every command group uses: connecting, flag checks, input and output files, summaries
// of a model's problem, architecture and training.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "client/cli.h"
#include "client/cli_internal.h"
#include "client/dense_tensor.h"
#include "client/format.h"
#include "client/tensor_io.h"
#include "proto/base/status_macros.h"

namespace invnet::client::cli {

namespace {

std::string OptionalInt(bool has, int64_t value) { return has ? absl::StrCat(value) : "-"; }
std::string OptionalNumber(bool has, double value) { return has ? FormatNumber(value) : "-"; }

// How c is shared by a block's layers; nothing when the request left it to the server.
std::string LipschitzSplitSuffix(v1::LipschitzSplit split) {
  switch (split) {
    case v1::LIPSCHITZ_SPLIT_GEOMETRIC:
      return " per block (layers at c^(1/L))";
    case v1::LIPSCHITZ_SPLIT_LAST_LAYER:
      return " per block (last layer at c)";
    case v1::LIPSCHITZ_SPLIT_EVERY_LAYER:
      return " per layer (trained before the split: blocks at c^L)";
    default:
      return "";
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<InvnetClient>> ConnectFor(const Invocation& inv, Context& ctx) {
  INVNET_RETURN_IF_ERROR(CheckServerAddress(inv.flags.server));
  ClientOptions options;
  if (inv.has("timeout")) {
    const double seconds = inv.flags.timeout;
    if (!(seconds >= 0) || !std::isfinite(seconds)) {
      return UsageError(absl::StrCat("--timeout must be >= 0 seconds, got ", seconds));
    }
    const absl::Duration timeout = seconds == 0 ? absl::InfiniteDuration() : absl::Seconds(seconds);
    options.rpc_timeout = options.compute_timeout = options.upload_timeout = timeout;
  }
  options.use_tls = inv.flags.tls;
  for (const char* flag : {"tls_ca_file", "tls_cert_file", "tls_key_file"}) {
    if (inv.has(flag) && !inv.flags.tls) {
      return UsageError(absl::StrCat("--", flag, " needs --tls"));
    }
  }
  if (inv.has("tls_cert_file") != inv.has("tls_key_file")) {
    return UsageError("--tls_cert_file and --tls_key_file go together (mutual TLS)");
  }
  options.tls_ca_file = inv.flags.tls_ca_file;
  options.tls_cert_file = inv.flags.tls_cert_file;
  options.tls_key_file = inv.flags.tls_key_file;
  options.token_file = inv.flags.token_file;
  if (!inv.has("token_file")) {
    const char* from_environment = std::getenv("INVNET_TOKEN_FILE");
    if (from_environment != nullptr) options.token_file = from_environment;
  }
  if (!ctx.connect) return absl::InternalError("no way to connect (Context::connect is empty)");
  return ctx.connect(inv.flags.server, options);
}

absl::Status RequireFlag(const Invocation& inv, absl::string_view flag, absl::string_view value,
                         absl::string_view value_name) {
  if (!inv.has(flag) || value.empty()) {
    return UsageError(absl::StrCat("--", flag, " ", value_name, " is required"));
  }
  return absl::OkStatus();
}

absl::Status RequirePositive(absl::string_view flag, double value) {
  if (!(value > 0) || !std::isfinite(value)) {
    return UsageError(absl::StrCat("--", flag, " must be > 0, got ", value));
  }
  return absl::OkStatus();
}

// The --input matrix, checked (shape, finiteness) before anything is sent.
absl::StatusOr<DenseTensor> ReadInput(const Invocation& inv) {
  INVNET_RETURN_IF_ERROR(RequireFlag(inv, "input", inv.flags.input, "FILE"));
  absl::Status format = TensorFileFormatFromPath(inv.flags.input).status();
  if (!format.ok()) return UsageError(absl::StrCat("--input ", format.message()));
  INVNET_ASSIGN_OR_RETURN(DenseTensor matrix, ReadMatrix(inv.flags.input));
  INVNET_RETURN_IF_ERROR(matrix.ValidateMatrix(inv.flags.input));
  return matrix;
}

// A bad --output extension is a usage error found before any work is done.
absl::Status CheckOutputFlag(const Invocation& inv) {
  if (!inv.has("output")) return absl::OkStatus();
  if (inv.flags.output.empty()) return UsageError("--output must not be empty");
  absl::Status format = TensorFileFormatFromPath(inv.flags.output).status();
  if (!format.ok()) return UsageError(absl::StrCat("--output ", format.message()));
  return absl::OkStatus();
}

// Writes `matrix` to `path`, or as CSV to ctx.out when `path` is empty.
absl::Status WriteResult(const DenseTensor& matrix, const std::string& path, Context& ctx) {
  if (path.empty()) {
    *ctx.out << EncodeCsv(matrix);
    return absl::OkStatus();
  }
  return WriteMatrix(path, matrix);
}

absl::Status ApplyScheduleFlags(const Invocation& inv, v1::Training* training) {
  const CliFlags& flags = inv.flags;
  if (inv.has("steps")) {
    INVNET_RETURN_IF_ERROR(RequireAtLeast<int64_t>("steps", flags.steps, 1));
    training->set_steps(flags.steps);
  }
  if (inv.has("batch_size")) {
    INVNET_RETURN_IF_ERROR(RequireAtLeast<int64_t>("batch_size", flags.batch_size, 1));
    training->set_batch_size(flags.batch_size);
  }
  if (inv.has("learning_rate")) {
    INVNET_RETURN_IF_ERROR(RequirePositive("learning_rate", flags.learning_rate));
    training->set_learning_rate(flags.learning_rate);
  }
  return absl::OkStatus();
}

std::string Percent(int64_t part, int64_t whole) {
  if (whole <= 0) return "-";
  return absl::StrFormat("%.1f%%", 100.0 * static_cast<double>(part) / static_cast<double>(whole));
}

void PrintFields(std::ostream& out, const std::vector<std::pair<std::string, std::string>>& fields,
                 absl::string_view indent) {
  size_t width = 0;
  for (const auto& [key, value] : fields) width = std::max(width, key.size());
  for (const auto& [key, value] : fields) {
    out << indent << key << ":" << std::string(width - key.size() + 2, ' ') << value << "\n";
  }
}

std::string ArchitectureSummary(const v1::Architecture& a) {
  return absl::StrCat(OptionalInt(a.has_num_blocks(), a.num_blocks()), " blocks x ",
                      OptionalInt(a.has_layers_per_block(), a.layers_per_block()),
                      " layers, width ", OptionalInt(a.has_hidden_width(), a.hidden_width()), ", ",
                      ActivationName(a.activation()),
                      ", c=", OptionalNumber(a.has_lipschitz_coeff(), a.lipschitz_coeff()),
                      LipschitzSplitSuffix(a.lipschitz_split()), ", seed ",
                      a.has_seed() ? absl::StrCat(a.seed()) : "-");
}

// `problem` resolves a loss weight left at its default, which servers before the weight was
// resolved at Train marked negative (delta^2, with delta the problem's noise level).
std::string TrainingSummary(const v1::Training& t, const v1::Problem& problem) {
  std::string text = absl::StrCat("loss ", LossName(t.loss()));
  if (t.has_loss_weight() && t.loss_weight() >= 0) {
    absl::StrAppend(&text, " (weight ", FormatNumber(t.loss_weight()), ")");
  } else if (t.has_loss_weight()) {
    const double delta = problem.noise_level();
    absl::StrAppend(&text, " (weight default",
                    delta > 0 ? absl::StrCat(" delta^2 = ", FormatNumber(delta * delta)) : "", ")");
  }
  absl::StrAppend(&text, ", target ", TargetSpaceName(t.target_space()), ", ",
                  OptionalInt(t.has_steps(), t.steps()), " steps, batch ",
                  OptionalInt(t.has_batch_size(), t.batch_size()), ", lr ",
                  OptionalNumber(t.has_learning_rate(), t.learning_rate()));
  if (t.has_cosine_decay()) absl::StrAppend(&text, t.cosine_decay() ? " (cosine)" : " (constant)");
  if (t.has_seed()) absl::StrAppend(&text, ", seed ", t.seed());
  return text;
}

std::string ProblemSummary(const v1::Problem& problem) {
  return absl::StrCat(OperatorSummary(problem.operator_()), ", noise ",
                      FormatNumber(problem.noise_level()), ", ", SignalsSummary(problem));
}

std::string FindMetric(const v1::ModelVersion& version, const std::string& name) {
  auto it = version.metrics().find(name);
  return it == version.metrics().end() ? "-" : FormatNumber(it->second);
}

}  // namespace invnet::client::cli
