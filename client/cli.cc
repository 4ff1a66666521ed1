#include "client/cli.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/cord.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "client/dense_tensor.h"
#include "client/experiment.h"
#include "client/format.h"
#include "client/load_generator.h"
#include "client/progress.h"
#include "client/report.h"
#include "client/tensor_io.h"
#include "google/protobuf/io/tokenizer.h"
#include "google/protobuf/text_format.h"
#include "proto/base/file_io.h"
#include "proto/base/status_macros.h"

namespace invnet::client::cli {
namespace {

constexpr char kUsageErrorPayload[] = "invnet.client.cli/usage_error";

using Operands = std::vector<std::string>;
using CommandFn = absl::Status (*)(const Invocation&, const Operands&, Context&);

struct Command {
  const char* name;      // "jobs list"
  const char* operands;  // "JOB_ID", "" when none
  size_t min_operands;
  size_t max_operands;
  const char* summary;
  std::vector<const char*> flags;  // besides the global ones
  const char* details;
  CommandFn run;
};

const char* const kGlobalFlags[] = {"server",        "timeout",      "tls",       "tls_ca_file",
                                    "tls_cert_file", "tls_key_file", "token_file"};
const char* const kGroups[] = {"jobs", "models", "datasets"};

// ---------------------------------------------------------------------------------------------
// Shared helpers.

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

template <typename T>
absl::Status RequireAtLeast(absl::string_view flag, T value, T minimum) {
  if (!(value >= minimum)) {
    return UsageError(absl::StrCat("--", flag, " must be >= ", minimum, ", got ", value));
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

std::string Percent(int64_t part, int64_t whole) {
  if (whole <= 0) return "-";
  return absl::StrFormat("%.1f%%", 100.0 * static_cast<double>(part) / static_cast<double>(whole));
}

void PrintFields(std::ostream& out, const std::vector<std::pair<std::string, std::string>>& fields,
                 absl::string_view indent = "") {
  size_t width = 0;
  for (const auto& [key, value] : fields) width = std::max(width, key.size());
  for (const auto& [key, value] : fields) {
    out << indent << key << ":" << std::string(width - key.size() + 2, ' ') << value << "\n";
  }
}

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

std::string ArchitectureSummary(const v1::Architecture& a) {
  return absl::StrCat(OptionalInt(a.has_num_blocks(), a.num_blocks()), " blocks x ",
                      OptionalInt(a.has_layers_per_block(), a.layers_per_block()),
                      " layers, width ", OptionalInt(a.has_hidden_width(), a.hidden_width()), ", ",
                      ActivationName(a.activation()),
                      ", c=", OptionalNumber(a.has_lipschitz_coeff(), a.lipschitz_coeff()),
                      LipschitzSplitSuffix(a.lipschitz_split()),
                      ", seed ", a.has_seed() ? absl::StrCat(a.seed()) : "-");
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

// ---------------------------------------------------------------------------------------------
// health

absl::Status RunHealth(const Invocation& inv, const Operands&, Context& ctx) {
  INVNET_ASSIGN_OR_RETURN(auto client, ConnectFor(inv, ctx));
  INVNET_ASSIGN_OR_RETURN(InvnetClient::HealthStatus status, client->Health(inv.flags.service));
  const std::string name = grpc::health::v1::HealthCheckResponse::ServingStatus_Name(status);
  *ctx.out << name << "\n";
  if (status != grpc::health::v1::HealthCheckResponse::SERVING) {
    return absl::UnavailableError(absl::StrCat("server ", inv.flags.server, " is ", name));
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// train and jobs

absl::StatusOr<v1::Loss> ParseLoss(absl::string_view text) {
  absl::StatusOr<v1::Loss> loss = ParseLossName(text);
  if (!loss.ok()) return UsageError(absl::StrCat("--loss: ", loss.status().message()));
  return loss;
}

absl::StatusOr<v1::TargetSpace> ParseTargetSpace(absl::string_view text) {
  const std::string name = absl::AsciiStrToLower(text);
  if (name == "measurement") return v1::TARGET_SPACE_MEASUREMENT;
  if (name == "normal") return v1::TARGET_SPACE_NORMAL;
  return UsageError(absl::StrCat("--target_space: '", text, "' is not one of measurement, normal"));
}

// Collects TextFormat's first error with its position (protobuf counts from 0).
class FirstErrorCollector : public google::protobuf::io::ErrorCollector {
 public:
  void AddError(int line, google::protobuf::io::ColumnNumber column,
                const std::string& message) override {
    if (error_.empty())
      error_ = absl::StrCat("line ", line + 1, ", column ", column + 1, ": ", message);
  }
  const std::string& error() const { return error_; }

 private:
  std::string error_;
};

// A TrainRequest in protobuf text format from `path`.
absl::StatusOr<v1::TrainRequest> ReadSpec(const std::string& path) {
  if (path.empty()) return UsageError("--spec must name a file");
  INVNET_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  google::protobuf::TextFormat::Parser parser;
  FirstErrorCollector errors;
  parser.RecordErrorsTo(&errors);
  v1::TrainRequest request;
  if (!parser.ParseFromString(text, &request)) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": not a TrainRequest in text format: ", errors.error()));
  }
  return request;
}

absl::Status PrintJobOutcome(const v1::TrainingJob& job, Context& ctx) {
  const std::string state = JobStateName(job.state());
  if (job.state() == v1::JOB_STATE_SUCCEEDED) {
    *ctx.out << "job " << job.job_id() << " succeeded: model " << job.model_name() << " version "
             << job.published_version() << " (" << job.step() << " steps in "
             << FormatDuration(job.elapsed_seconds()) << ", final loss "
             << FormatNumber(job.loss());
    if (job.has_last_validation()) {
      *ctx.out << ", val_mse " << FormatNumber(job.last_validation().mse());
    }
    *ctx.out << ")\n";
    return absl::OkStatus();
  }
  std::string message = absl::StrCat("job ", job.job_id(), " ", state);
  if (!job.error().empty()) absl::StrAppend(&message, ": ", job.error());
  if (job.state() == v1::JOB_STATE_FAILED || job.state() == v1::JOB_STATE_CANCELLED) {
    return absl::AbortedError(message);
  }
  // The stream ended while the job was still queued or running (the server went away).
  return absl::UnavailableError(absl::StrCat(message, " (the watch ended before the job did)"));
}

// Watches a job to its end with progress on ctx.err; OK only when it succeeded.
absl::Status WatchToTheEnd(const InvnetClient& client, const std::string& job_id, Context& ctx) {
  ProgressPrinter printer(ctx.err, ctx.interactive);
  absl::StatusOr<v1::TrainingJob> last = client.WatchTrainingJob(
      job_id, [&printer](const v1::TrainingJob& job) { printer.Update(job); });
  printer.Finish();
  if (!last.ok()) return last.status();
  return PrintJobOutcome(*last, ctx);
}

// Watches a job to its end with progress on ctx.err; OK only when it succeeded. Meanwhile an
// interrupt (Ctrl-C) says that the job goes on without us.
absl::Status FollowJob(const InvnetClient& client, const std::string& job_id, Context& ctx) {
  if (ctx.set_interrupt_message) {
    ctx.set_interrupt_message(absl::StrCat("job ", job_id,
                                           " keeps running on the server; `invnet jobs cancel ",
                                           job_id, "` stops it"));
  }
  absl::Status followed = WatchToTheEnd(client, job_id, ctx);
  if (ctx.set_interrupt_message) ctx.set_interrupt_message("");
  return followed;
}

absl::Status RunTrain(const Invocation& inv, const Operands&, Context& ctx) {
  INVNET_ASSIGN_OR_RETURN(v1::TrainRequest request, BuildTrainRequest(inv));
  INVNET_ASSIGN_OR_RETURN(auto client, ConnectFor(inv, ctx));
  INVNET_ASSIGN_OR_RETURN(v1::TrainResponse response, client->Train(request));
  const v1::TrainingJob& job = response.job();
  // On stderr, so a detached job's stdout stays its id alone.
  for (const std::string& warning : job.warnings()) *ctx.err << "warning: " << warning << "\n";
  if (inv.flags.detach) {
    *ctx.out << job.job_id() << "\n";
    return absl::OkStatus();
  }
  *ctx.err << "job " << job.job_id() << " started: training model " << job.model_name() << "\n";
  return FollowJob(*client, job.job_id(), ctx);
}

absl::Status RunJobsList(const Invocation& inv, const Operands&, Context& ctx) {
  INVNET_ASSIGN_OR_RETURN(auto client, ConnectFor(inv, ctx));
  INVNET_ASSIGN_OR_RETURN(v1::ListTrainingJobsResponse response, client->ListTrainingJobs());
  if (response.jobs().empty()) {
    *ctx.out << "no training jobs\n";
    return absl::OkStatus();
  }
  Table table({"JOB", "MODEL", "STATE", "STEP", "LOSS", "ELAPSED", "VERSION", "CREATED"});
  for (const v1::TrainingJob& job : response.jobs()) {
    table.AddRow({job.job_id(), job.model_name(), JobStateName(job.state()),
                  absl::StrCat(job.step(), "/", job.total_steps()),
                  job.step() > 0 ? FormatNumber(job.loss()) : "-",
                  FormatDuration(job.elapsed_seconds()),
                  job.published_version() > 0 ? absl::StrCat(job.published_version()) : "-",
                  FormatTimestamp(job.created())});
  }
  table.Print(*ctx.out);
  return absl::OkStatus();
}

absl::Status RunJobsShow(const Invocation& inv, const Operands& operands, Context& ctx) {
  INVNET_ASSIGN_OR_RETURN(auto client, ConnectFor(inv, ctx));
  v1::GetTrainingJobRequest request;
  request.set_job_id(operands[0]);
  INVNET_ASSIGN_OR_RETURN(v1::GetTrainingJobResponse response, client->GetTrainingJob(request));
  const v1::TrainingJob& job = response.job();
  std::vector<std::pair<std::string, std::string>> fields = {
      {"job", job.job_id()},
      {"model", job.model_name()},
      {"state", JobStateName(job.state())},
      {"progress", absl::StrCat(job.step(), "/", job.total_steps(), " steps (",
                                Percent(job.step(), job.total_steps()), ")")},
      {"loss", job.step() > 0 ? FormatNumber(job.loss()) : "-"},
      {"learning rate", FormatNumber(job.learning_rate())},
      {"elapsed", FormatDuration(job.elapsed_seconds())},
      {"eta", job.state() == v1::JOB_STATE_RUNNING ? FormatDuration(job.eta_seconds()) : "-"},
      {"created", FormatTimestamp(job.created())},
      {"finished", FormatTimestamp(job.finished())},
  };
  if (job.published_version() > 0) {
    fields.push_back({"published", absl::StrCat("version ", job.published_version())});
  }
  if (!job.error().empty()) fields.push_back({"error", job.error()});
  fields.push_back({"preset", job.preset().empty() ? "-" : job.preset()});
  fields.push_back({"problem", ProblemSummary(job.problem())});
  fields.push_back({"architecture", ArchitectureSummary(job.architecture())});
  fields.push_back({"training", TrainingSummary(job.training(), job.problem())});
  fields.push_back({"target space",
                    job.target_space_reason().empty()
                        ? std::string(TargetSpaceName(job.training().target_space()))
                        : absl::StrCat(TargetSpaceName(job.training().target_space()), " (",
                                       job.target_space_reason(), ")")});
  for (const std::string& warning : job.warnings()) fields.push_back({"warning", warning});
  if (job.has_last_validation()) {
    const v1::ValidationMetrics& v = job.last_validation();
    fields.push_back(
        {"validation", absl::StrCat("step ", v.step(), ": mse ", FormatNumber(v.mse()), ", mse/pm ",
                                    FormatNumber(v.mse_ratio_to_pm()), ", forward error ",
                                    FormatNumber(v.forward_error()), ", converged ",
                                    FormatNumber(100 * v.converged_fraction()), "%, iterations ",
                                    FormatNumber(v.mean_iterations()))});
  }
  PrintFields(*ctx.out, fields);
  return absl::OkStatus();
}

absl::Status RunJobsCancel(const Invocation& inv, const Operands& operands, Context& ctx) {
  INVNET_ASSIGN_OR_RETURN(auto client, ConnectFor(inv, ctx));
  v1::CancelTrainingJobRequest request;
  request.set_job_id(operands[0]);
  INVNET_ASSIGN_OR_RETURN(v1::CancelTrainingJobResponse response,
                          client->CancelTrainingJob(request));
  const v1::TrainingJob& job = response.job();
  switch (job.state()) {
    case v1::JOB_STATE_CANCELLED:
      *ctx.out << "job " << job.job_id() << " cancelled\n";
      break;
    case v1::JOB_STATE_QUEUED:
    case v1::JOB_STATE_RUNNING:
      // The trainer stops at its next step; `jobs watch` shows when.
      *ctx.out << "job " << job.job_id() << ": cancel requested (stops at its next step; "
               << "'invnet jobs watch " << job.job_id() << "' follows it)\n";
      break;
    default:
      *ctx.out << "job " << job.job_id() << " already " << JobStateName(job.state()) << "\n";
  }
  return absl::OkStatus();
}

absl::Status RunJobsWatch(const Invocation& inv, const Operands& operands, Context& ctx) {
  INVNET_ASSIGN_OR_RETURN(auto client, ConnectFor(inv, ctx));
  return FollowJob(*client, operands[0], ctx);
}

// ---------------------------------------------------------------------------------------------
// models

absl::Status RunModelsList(const Invocation& inv, const Operands&, Context& ctx) {
  INVNET_ASSIGN_OR_RETURN(auto client, ConnectFor(inv, ctx));
  INVNET_ASSIGN_OR_RETURN(v1::ListModelsResponse response, client->ListModels());
  if (response.models().empty()) {
    *ctx.out << "no models\n";
    return absl::OkStatus();
  }
  Table table({"MODEL", "VERSIONS", "LATEST", "OPERATOR", "DIMS", "LOSS", "VAL_MSE", "CREATED"});
  for (const v1::Model& model : response.models()) {
    if (model.versions().empty()) {
      table.AddRow({model.name(), "0"});
      continue;
    }
    const v1::ModelVersion& latest = *model.versions().rbegin();
    table.AddRow({model.name(), absl::StrCat(model.versions_size()), absl::StrCat(latest.version()),
                  OperatorSummary(latest.problem().operator_()),
                  absl::StrCat("m=", latest.measurement_dim(), " n=", latest.architecture().dim()),
                  LossName(latest.training().loss()), FindMetric(latest, "val_mse"),
                  FormatTimestamp(latest.created())});
  }
  table.Print(*ctx.out);
  return absl::OkStatus();
}

void PrintModelVersion(const v1::ModelVersion& v, std::ostream& out) {
  out << "model " << v.name() << " version " << v.version() << "\n";
  std::vector<std::pair<std::string, std::string>> fields = {
      {"created", FormatTimestamp(v.created())},
      {"job", v.job_id().empty() ? "-" : v.job_id()},
      {"preset", v.preset().empty() ? "-" : v.preset()},
      {"problem", ProblemSummary(v.problem())},
      {"dims", absl::StrCat("m=", v.measurement_dim(), " -> n=", v.architecture().dim())},
      {"architecture", ArchitectureSummary(v.architecture())},
      {"training", TrainingSummary(v.training(), v.problem())},
      {"lipschitz", absl::StrCat(FormatNumber(v.lower_lipschitz()), " <= |phi(a)-phi(b)|/|a-b| <= ",
                                 FormatNumber(v.upper_lipschitz()))},
      {"size", FormatBytes(v.size_bytes())},
  };
  if (!v.block_lipschitz().empty()) {
    std::vector<std::string> blocks;
    for (double l : v.block_lipschitz()) blocks.push_back(FormatNumber(l));
    fields.push_back({"block lipschitz", absl::StrJoin(blocks, ", ")});
  }
  for (const std::string& warning : v.warnings()) fields.push_back({"warning", warning});
  // Sorted, so the output does not depend on the map's iteration order.
  const std::map<std::string, double> metrics(v.metrics().begin(), v.metrics().end());
  for (const auto& [name, value] : metrics) fields.push_back({name, FormatNumber(value)});
  PrintFields(out, fields, "  ");
}

absl::Status RunModelsShow(const Invocation& inv, const Operands& operands, Context& ctx) {
  if (inv.has("version"))
    INVNET_RETURN_IF_ERROR(RequireAtLeast<int64_t>("version", inv.flags.version, 1));
  INVNET_ASSIGN_OR_RETURN(auto client, ConnectFor(inv, ctx));
  v1::GetModelRequest request;
  request.set_name(operands[0]);
  INVNET_ASSIGN_OR_RETURN(v1::GetModelResponse response, client->GetModel(request));
  bool printed = false;
  for (const v1::ModelVersion& version : response.model().versions()) {
    if (inv.has("version") && version.version() != inv.flags.version) continue;
    if (printed) *ctx.out << "\n";
    PrintModelVersion(version, *ctx.out);
    printed = true;
  }
  if (!printed && inv.has("version")) {
    return absl::NotFoundError(
        absl::StrCat("model ", operands[0], " has no version ", inv.flags.version));
  }
  if (!printed) *ctx.out << "model " << operands[0] << " has no versions\n";
  return absl::OkStatus();
}

absl::Status RunModelsDelete(const Invocation& inv, const Operands& operands, Context& ctx) {
  // Deleting every version must be asked for explicitly.
  if (inv.has("version") == (inv.has("all_versions") && inv.flags.all_versions)) {
    return UsageError("models delete: give --version=N or --all_versions");
  }
  if (inv.has("version"))
    INVNET_RETURN_IF_ERROR(RequireAtLeast<int64_t>("version", inv.flags.version, 1));
  INVNET_ASSIGN_OR_RETURN(auto client, ConnectFor(inv, ctx));
  v1::DeleteModelRequest request;
  request.set_name(operands[0]);
  if (inv.has("version")) {
    request.set_version(inv.flags.version);
  } else {
    request.set_all_versions(true);
  }
  INVNET_RETURN_IF_ERROR(client->DeleteModel(request).status());
  if (request.version() > 0) {
    *ctx.out << "deleted version " << request.version() << " of model " << operands[0] << "\n";
  } else {
    *ctx.out << "deleted model " << operands[0] << " (every version)\n";
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// datasets

absl::Status RunDatasetsUpload(const Invocation& inv, const Operands& operands, Context& ctx) {
  if (inv.has("rows_per_chunk")) {
    INVNET_RETURN_IF_ERROR(RequireAtLeast<int64_t>("rows_per_chunk", inv.flags.rows_per_chunk, 0));
  }
  INVNET_ASSIGN_OR_RETURN(DenseTensor samples, ReadInput(inv));
  INVNET_ASSIGN_OR_RETURN(auto client, ConnectFor(inv, ctx));
  INVNET_ASSIGN_OR_RETURN(v1::Dataset dataset,
                          client->UploadDataset(operands[0], samples, inv.flags.rows_per_chunk));
  *ctx.out << "uploaded dataset " << dataset.name() << ": " << dataset.num_samples()
           << " samples of dimension " << dataset.dim() << " (" << FormatBytes(dataset.size_bytes())
           << ")\n";
  return absl::OkStatus();
}

absl::Status RunDatasetsList(const Invocation& inv, const Operands&, Context& ctx) {
  INVNET_ASSIGN_OR_RETURN(auto client, ConnectFor(inv, ctx));
  INVNET_ASSIGN_OR_RETURN(v1::ListDatasetsResponse response, client->ListDatasets());
  if (response.datasets().empty()) {
    *ctx.out << "no datasets\n";
    return absl::OkStatus();
  }
  Table table({"DATASET", "DIM", "SAMPLES", "SIZE", "CREATED"});
  for (const v1::Dataset& d : response.datasets()) {
    table.AddRow({d.name(), absl::StrCat(d.dim()), absl::StrCat(d.num_samples()),
                  FormatBytes(d.size_bytes()), FormatTimestamp(d.created())});
  }
  table.Print(*ctx.out);
  return absl::OkStatus();
}

absl::Status RunDatasetsDelete(const Invocation& inv, const Operands& operands, Context& ctx) {
  INVNET_ASSIGN_OR_RETURN(auto client, ConnectFor(inv, ctx));
  v1::DeleteDatasetRequest request;
  request.set_name(operands[0]);
  INVNET_RETURN_IF_ERROR(client->DeleteDataset(request).status());
  *ctx.out << "deleted dataset " << operands[0] << "\n";
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// reconstruct, forward, estimate

absl::Status CheckModelFlags(const Invocation& inv) {
  INVNET_RETURN_IF_ERROR(RequireFlag(inv, "model", inv.flags.model, "NAME"));
  if (inv.has("version"))
    INVNET_RETURN_IF_ERROR(RequireAtLeast<int64_t>("version", inv.flags.version, 0));
  return CheckOutputFlag(inv);
}

std::string Destination(const Invocation& inv) {
  return inv.has("output") ? inv.flags.output : "stdout";
}

// The rows of one request, at most: --chunk_rows, or what the server allows.
absl::StatusOr<int64_t> ChunkRows(const Invocation& inv) {
  INVNET_RETURN_IF_ERROR(RequireAtLeast<int64_t>("chunk_rows", inv.flags.chunk_rows, 1));
  return inv.flags.chunk_rows;
}

// Calls `call(begin, count)` for consecutive row ranges covering [0, rows), at most
// `chunk_rows` rows each. When the server refuses a range as larger than its --max_batch
// (RESOURCE_EXHAUSTED "... limit of N (--max_batch)"), the rest goes in ranges of that limit
// (half the range when the message names no number).
template <typename Call>
absl::Status InChunks(int64_t rows, int64_t chunk_rows, Call call) {
  int64_t chunk = std::max<int64_t>(1, std::min(chunk_rows, rows));
  for (int64_t begin = 0; begin < rows;) {
    const int64_t count = std::min(chunk, rows - begin);
    absl::Status status = call(begin, count);
    if (status.code() == absl::StatusCode::kResourceExhausted && count > 1 &&
        absl::StrContains(status.message(), "--max_batch")) {
      int64_t limit = 0;
      const size_t at = status.message().find("limit of ");
      if (at != absl::string_view::npos) {
        const absl::string_view rest = status.message().substr(at + 9);
        (void)absl::SimpleAtoi(rest.substr(0, rest.find(' ')), &limit);
      }
      chunk = limit >= 1 && limit < count ? limit : count / 2;
      continue;
    }
    INVNET_RETURN_IF_ERROR(status);
    begin += count;
  }
  return absl::OkStatus();
}

// Per-sample solver diagnostics as CSV, one row per input row (counted from 1).
std::string DiagnosticsCsv(const v1::ReconstructResponse& r) {
  std::string csv = "row,iterations,converged,error_bound,forward_residual\n";
  for (int i = 0; i < r.iterations_size(); ++i) {
    absl::StrAppend(
        &csv, i + 1, ",", r.iterations(i), ",",
        i < r.converged_size() && r.converged(i) ? "true" : "false", ",",
        i < r.error_bound_size() ? absl::StrFormat("%.9g", r.error_bound(i)) : "", ",",
        i < r.forward_residual_size() ? absl::StrFormat("%.9g", r.forward_residual(i)) : "", "\n");
  }
  return csv;
}

// "0.12, 0.081 per component" over the rows where the std is defined, and how many are not.
std::string PosteriorStdSummary(const DenseTensor& std) {
  std::vector<double> sum(static_cast<size_t>(std.cols()), 0.0);
  int64_t defined = 0;
  for (int64_t r = 0; r < std.rows(); ++r) {
    bool nan = false;
    for (int64_t c = 0; c < std.cols(); ++c) nan = nan || std::isnan(std.at(r, c));
    if (nan) continue;
    ++defined;
    for (int64_t c = 0; c < std.cols(); ++c) sum[static_cast<size_t>(c)] += std.at(r, c);
  }
  std::vector<std::string> means;
  constexpr int64_t kShown = 8;
  for (int64_t c = 0; c < std::min(kShown, std.cols()); ++c) {
    means.push_back(defined > 0 ? FormatNumber(sum[static_cast<size_t>(c)] / defined) : "-");
  }
  std::string out = absl::StrCat(absl::StrJoin(means, ", "),
                                 std.cols() > kShown ? ", ..." : "", " per component");
  if (defined < std.rows()) {
    absl::StrAppend(&out, "; undefined (NaN) in ", std.rows() - defined, " of ", std.rows(),
                    " samples");
  }
  return out;
}

absl::Status RunReconstruct(const Invocation& inv, const Operands&, Context& ctx) {
  INVNET_RETURN_IF_ERROR(CheckModelFlags(inv));
  INVNET_ASSIGN_OR_RETURN(const int64_t chunk_rows, ChunkRows(inv));
  if (inv.has("diagnostics") && inv.flags.diagnostics.empty()) {
    return UsageError("--diagnostics must name a file");
  }
  const bool want_std = inv.has("posterior_std");
  if (want_std) {
    absl::Status format = TensorFileFormatFromPath(inv.flags.posterior_std).status();
    if (!format.ok()) return UsageError(absl::StrCat("--posterior_std ", format.message()));
  }
  v1::ReconstructRequest request;
  request.set_posterior_std(want_std);
  request.set_model(inv.flags.model);
  request.set_version(inv.flags.version);
  v1::SolverOptions* solver = request.mutable_solver();
  if (inv.has("tolerance")) {
    INVNET_RETURN_IF_ERROR(RequirePositive("tolerance", inv.flags.tolerance));
    solver->set_tolerance(inv.flags.tolerance);
  }
  if (inv.has("max_iterations")) {
    INVNET_RETURN_IF_ERROR(RequireAtLeast<int64_t>("max_iterations", inv.flags.max_iterations, 1));
    solver->set_max_iterations(inv.flags.max_iterations);
  }
  if (inv.has("anderson")) solver->set_anderson(inv.flags.anderson);
  if (inv.has("anderson_memory")) {
    INVNET_RETURN_IF_ERROR(
        RequireAtLeast<int64_t>("anderson_memory", inv.flags.anderson_memory, 1));
    solver->set_anderson_memory(inv.flags.anderson_memory);
  }
  INVNET_ASSIGN_OR_RETURN(DenseTensor measurements, ReadInput(inv));

  INVNET_ASSIGN_OR_RETURN(auto client, ConnectFor(inv, ctx));
  // The chunks' answers, concatenated in order; every chunk after the first asks for the
  // version that answered the first, so that one model answers them all.
  v1::ReconstructResponse response;
  DenseTensor x;
  DenseTensor posterior_std;
  INVNET_RETURN_IF_ERROR(
      InChunks(measurements.rows(), chunk_rows, [&](int64_t begin, int64_t count) -> absl::Status {
        RowRange(measurements, begin, count).ToProto(request.mutable_measurements());
        INVNET_ASSIGN_OR_RETURN(v1::ReconstructResponse part, client->Reconstruct(request));
        INVNET_ASSIGN_OR_RETURN(DenseTensor part_x,
                                DenseTensor::FromProto(part.reconstructions(), "reconstructions"));
        AppendRows(part_x, &x);
        if (want_std) {
          INVNET_ASSIGN_OR_RETURN(
              DenseTensor part_std,
              DenseTensor::FromProtoAllowingNaN(part.posterior_std(), "posterior_std"));
          if (part_std.shape != part_x.shape) {
            return absl::InternalError(absl::StrCat(
                "the server answered posterior_std of shape ", ShapeToString(part_std.shape),
                " for reconstructions of shape ", ShapeToString(part_x.shape)));
          }
          AppendRows(part_std, &posterior_std);
          part.clear_posterior_std();
        }
        request.set_version(part.version());
        part.clear_reconstructions();
        response.MergeFrom(part);  // appends the per-sample fields, keeps model and version
        return absl::OkStatus();
      }));
  INVNET_RETURN_IF_ERROR(WriteResult(x, inv.flags.output, ctx));
  if (inv.has("diagnostics")) {
    INVNET_RETURN_IF_ERROR(WriteFileAtomically(inv.flags.diagnostics, DiagnosticsCsv(response)));
  }
  if (want_std) INVNET_RETURN_IF_ERROR(WriteMatrix(inv.flags.posterior_std, posterior_std));

  const int64_t batch = x.rows();
  int64_t max_iterations = 0;
  double total_iterations = 0;
  for (int64_t it : response.iterations()) {
    max_iterations = std::max(max_iterations, it);
    total_iterations += static_cast<double>(it);
  }
  const int64_t converged =
      std::count(response.converged().begin(), response.converged().end(), true);
  double max_bound = 0;
  for (double b : response.error_bound()) max_bound = std::max(max_bound, b);
  double max_residual = 0;
  for (double r : response.forward_residual()) max_residual = std::max(max_residual, r);

  std::ostream& err = *ctx.err;
  err << "reconstructed " << batch << " samples (dimension " << x.cols() << ") with model "
      << response.model() << " version " << response.version() << " -> " << Destination(inv)
      << "\n";
  if (inv.has("diagnostics")) {
    err << "per-sample diagnostics (iterations, converged, error_bound, forward_residual) -> "
        << inv.flags.diagnostics << "\n";
  }
  PrintFields(err,
              {{"iterations",
                absl::StrCat("mean ",
                             FormatNumber(response.iterations().empty()
                                              ? 0.0
                                              : total_iterations / response.iterations_size()),
                             ", max ", max_iterations)},
               {"converged", absl::StrCat(converged, "/", response.converged_size(), " (",
                                          Percent(converged, response.converged_size()), ")")},
               {"max error bound", FormatNumber(max_bound)},
               {"max forward residual", FormatNumber(max_residual)}},
              "  ");
  if (want_std) {
    err << "posterior std (" << response.posterior_std_method() << ", from the network's "
        << "Jacobian) -> " << inv.flags.posterior_std << "\n";
    PrintFields(err, {{"mean", PosteriorStdSummary(posterior_std)}}, "  ");
  }
  if (converged < response.converged_size()) {
    err << "warning: " << response.converged_size() - converged << " of "
        << response.converged_size()
        << " samples did not converge; their error bounds say how far they may be off\n";
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// bench

absl::Status RunBench(const Invocation& inv, const Operands&, Context& ctx) {
  INVNET_ASSIGN_OR_RETURN(LoadOptions options, BuildLoadOptions(inv));
  const CliFlags& f = inv.flags;
  INVNET_ASSIGN_OR_RETURN(auto client, ConnectFor(inv, ctx));
  // The input dimension comes from the model's description.
  v1::GetModelRequest get;
  get.set_name(f.model);
  INVNET_ASSIGN_OR_RETURN(v1::GetModelResponse model, client->GetModel(get));
  const v1::ModelVersion* version = nullptr;
  for (const v1::ModelVersion& v : model.model().versions()) {
    if (f.version == 0 || v.version() == f.version) version = &v;
  }
  if (version == nullptr) {
    return absl::NotFoundError(absl::StrCat("model ", f.model, " has no version ", f.version));
  }
  options.version = version->version();
  const int64_t dim =
      f.rpc == "reconstruct" ? version->measurement_dim() : version->architecture().dim();
  INVNET_ASSIGN_OR_RETURN(LoadReport report, RunLoad(client->channel(), dim, options));
  *ctx.out << FormatLoadReport(report, options);
  if (report.requests == 0) {
    return absl::UnavailableError("bench: no request succeeded (see the errors above)");
  }
  return absl::OkStatus();
}

absl::Status RunForward(const Invocation& inv, const Operands&, Context& ctx) {
  INVNET_RETURN_IF_ERROR(CheckModelFlags(inv));
  v1::ForwardRequest request;
  request.set_model(inv.flags.model);
  request.set_version(inv.flags.version);
  INVNET_ASSIGN_OR_RETURN(const int64_t chunk_rows, ChunkRows(inv));
  INVNET_ASSIGN_OR_RETURN(DenseTensor signals, ReadInput(inv));
  INVNET_ASSIGN_OR_RETURN(auto client, ConnectFor(inv, ctx));
  v1::ForwardResponse response;
  DenseTensor outputs;
  INVNET_RETURN_IF_ERROR(
      InChunks(signals.rows(), chunk_rows, [&](int64_t begin, int64_t count) -> absl::Status {
        RowRange(signals, begin, count).ToProto(request.mutable_signals());
        INVNET_ASSIGN_OR_RETURN(response, client->Forward(request));
        INVNET_ASSIGN_OR_RETURN(DenseTensor part,
                                DenseTensor::FromProto(response.outputs(), "outputs"));
        AppendRows(part, &outputs);
        request.set_version(response.version());
        return absl::OkStatus();
      }));
  INVNET_RETURN_IF_ERROR(WriteResult(outputs, inv.flags.output, ctx));
  *ctx.err << "phi(x) for " << outputs.rows() << " samples (dimension " << outputs.cols()
           << ") with model " << response.model() << " version " << response.version() << " -> "
           << Destination(inv) << "\n";
  return absl::OkStatus();
}

struct EstimatorInfo {
  const char* name;
  v1::Estimator value;
  bool (v1::EstimateResponse::*has)() const;
  const v1::Tensor& (v1::EstimateResponse::*get)() const;
};

const std::vector<EstimatorInfo>& Estimators() {
  static const auto* estimators = new std::vector<EstimatorInfo>{
      {"posterior_mean", v1::ESTIMATOR_POSTERIOR_MEAN, &v1::EstimateResponse::has_posterior_mean,
       &v1::EstimateResponse::posterior_mean},
      {"posterior_std", v1::ESTIMATOR_POSTERIOR_STD, &v1::EstimateResponse::has_posterior_std,
       &v1::EstimateResponse::posterior_std},
      {"map", v1::ESTIMATOR_MAP, &v1::EstimateResponse::has_map, &v1::EstimateResponse::map},
      {"wiener", v1::ESTIMATOR_WIENER, &v1::EstimateResponse::has_wiener,
       &v1::EstimateResponse::wiener},
      {"pseudo_inverse", v1::ESTIMATOR_PSEUDO_INVERSE, &v1::EstimateResponse::has_pseudo_inverse,
       &v1::EstimateResponse::pseudo_inverse},
  };
  return *estimators;
}

// "out.npy" + "map" -> "out.map.npy" (estimate's files, pairs' .x and .y files).
std::string SuffixedPath(const std::string& output, absl::string_view estimator) {
  const size_t dot = output.rfind('.');
  const size_t slash = output.rfind('/');
  if (dot == std::string::npos || (slash != std::string::npos && dot < slash)) {
    return absl::StrCat(output, ".", estimator);
  }
  return absl::StrCat(output.substr(0, dot), ".", estimator, output.substr(dot));
}

absl::Status RunEstimate(const Invocation& inv, const Operands&, Context& ctx) {
  INVNET_RETURN_IF_ERROR(CheckModelFlags(inv));
  v1::EstimateRequest request;
  request.set_model(inv.flags.model);
  request.set_version(inv.flags.version);
  if (inv.has("estimators")) {
    for (absl::string_view word :
         absl::StrSplit(inv.flags.estimators, ',', absl::SkipWhitespace())) {
      word = absl::StripAsciiWhitespace(word);
      auto it = std::find_if(Estimators().begin(), Estimators().end(),
                             [&](const EstimatorInfo& e) { return word == e.name; });
      if (it == Estimators().end()) {
        return UsageError(absl::StrCat("--estimators: '", word,
                                       "' is not one of posterior_mean, posterior_std, map, "
                                       "wiener, pseudo_inverse"));
      }
      request.add_estimators(it->value);
    }
  }
  INVNET_ASSIGN_OR_RETURN(const int64_t chunk_rows, ChunkRows(inv));
  INVNET_ASSIGN_OR_RETURN(DenseTensor measurements, ReadInput(inv));
  INVNET_ASSIGN_OR_RETURN(auto client, ConnectFor(inv, ctx));
  // model, version, map_objective and map_gradient_norm of every chunk
  v1::EstimateResponse response;
  std::map<const EstimatorInfo*, DenseTensor> merged;
  INVNET_RETURN_IF_ERROR(
      InChunks(measurements.rows(), chunk_rows, [&](int64_t begin, int64_t count) -> absl::Status {
        RowRange(measurements, begin, count).ToProto(request.mutable_measurements());
        INVNET_ASSIGN_OR_RETURN(v1::EstimateResponse part, client->Estimate(request));
        for (const EstimatorInfo& e : Estimators()) {
          if (!(part.*e.has)()) continue;
          INVNET_ASSIGN_OR_RETURN(DenseTensor tensor,
                                  DenseTensor::FromProto((part.*e.get)(), e.name));
          AppendRows(tensor, &merged[&e]);
        }
        request.set_version(part.version());
        response.set_model(part.model());
        response.set_version(part.version());
        response.mutable_map_objective()->MergeFrom(part.map_objective());
        response.mutable_map_gradient_norm()->MergeFrom(part.map_gradient_norm());
        return absl::OkStatus();
      }));

  std::vector<std::pair<const EstimatorInfo*, DenseTensor>> results;
  for (const EstimatorInfo& e : Estimators()) {
    auto it = merged.find(&e);
    if (it != merged.end()) results.emplace_back(&e, std::move(it->second));
  }
  if (results.empty()) return absl::InternalError("the server returned no estimates");
  std::vector<std::string> written;
  for (const auto& [e, tensor] : results) {
    if (!inv.has("output")) {
      if (results.size() > 1) *ctx.out << "# " << e->name << "\n";
      *ctx.out << EncodeCsv(tensor);
      continue;
    }
    const std::string path =
        results.size() == 1 ? inv.flags.output : SuffixedPath(inv.flags.output, e->name);
    INVNET_RETURN_IF_ERROR(WriteMatrix(path, tensor));
    written.push_back(path);
  }

  std::vector<std::string> names;
  for (const auto& result : results) names.push_back(result.first->name);
  std::ostream& err = *ctx.err;
  err << "estimated " << measurements.rows() << " samples with the reference estimators of model "
      << response.model() << " version " << response.version() << "\n";
  std::vector<std::pair<std::string, std::string>> fields = {
      {"estimators", absl::StrJoin(names, ", ")},
      {"output", written.empty() ? "stdout" : absl::StrJoin(written, ", ")}};
  if (!response.map_objective().empty()) {
    double sum = 0, max = -INFINITY;
    for (double v : response.map_objective()) {
      sum += v;
      max = std::max(max, v);
    }
    fields.push_back(
        {"map objective", absl::StrCat("mean ", FormatNumber(sum / response.map_objective_size()),
                                       ", max ", FormatNumber(max))});
  }
  if (!response.map_gradient_norm().empty()) {
    double sum = 0, max = 0;
    for (double v : response.map_gradient_norm()) {
      sum += v;
      max = std::max(max, v);
    }
    fields.push_back({"map grad norm",
                      absl::StrCat("mean ", FormatNumber(sum / response.map_gradient_norm_size()),
                                   ", max ", FormatNumber(max))});
  }
  PrintFields(err, fields, "  ");
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// pairs

absl::Status RunPairs(const Invocation& inv, const Operands&, Context& ctx) {
  INVNET_RETURN_IF_ERROR(CheckModelFlags(inv));
  INVNET_RETURN_IF_ERROR(RequireFlag(inv, "output", inv.flags.output, "FILE"));
  if (!inv.has("count")) return UsageError("--count N is required");
  INVNET_RETURN_IF_ERROR(RequireAtLeast<int64_t>("count", inv.flags.count, 1));
  v1::DrawTestPairsRequest request;
  request.set_model(inv.flags.model);
  request.set_version(inv.flags.version);
  request.set_count(inv.flags.count);
  request.set_seed(inv.flags.seed);
  INVNET_ASSIGN_OR_RETURN(auto client, ConnectFor(inv, ctx));
  INVNET_ASSIGN_OR_RETURN(v1::DrawTestPairsResponse response, client->DrawTestPairs(request));
  INVNET_ASSIGN_OR_RETURN(DenseTensor x, DenseTensor::FromProto(response.signals(), "signals"));
  INVNET_ASSIGN_OR_RETURN(DenseTensor y,
                          DenseTensor::FromProto(response.measurements(), "measurements"));
  const std::string x_path = SuffixedPath(inv.flags.output, "x");
  const std::string y_path = SuffixedPath(inv.flags.output, "y");
  INVNET_RETURN_IF_ERROR(WriteMatrix(x_path, x));
  INVNET_RETURN_IF_ERROR(WriteMatrix(y_path, y));
  *ctx.err << "drew " << x.rows() << " held-out test pairs (seed " << request.seed()
           << ") from the problem of model " << response.model() << " version "
           << response.version() << "\n";
  PrintFields(*ctx.err,
              {{"signals x", absl::StrCat(ShapeToString(x.shape), " -> ", x_path)},
               {"measurements y", absl::StrCat(ShapeToString(y.shape), " -> ", y_path)}},
              "  ");
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// experiment

absl::Status RunExperiment(const Invocation& inv, const Operands&, Context& ctx) {
  INVNET_ASSIGN_OR_RETURN(ExperimentPlan plan, BuildExperimentPlan(inv));
  INVNET_ASSIGN_OR_RETURN(auto client, ConnectFor(inv, ctx));
  ExperimentConfig& config = plan.config;
  config.server = inv.flags.server;
  std::vector<std::string> names;
  for (const PlannedJob& job : PlanJobs(config)) names.push_back(job.model);
  *ctx.err << "experiment " << config.label << ": training " << names.size() << " models, "
           << (config.training_seeds > 1
                   ? absl::StrCat(config.training_seeds, " training seeds per loss")
                   : std::string("one per loss"))
           << " (" << absl::StrJoin(names, ", ") << ")\n";
  if (ctx.set_interrupt_message) {
    ctx.set_interrupt_message(
        "the experiment's jobs keep running on the server; `invnet jobs list` shows them and "
        "`invnet jobs cancel JOB_ID` stops one");
  }
  absl::StatusOr<TrainingOutcome> outcome = [&] {
    MultiJobProgress progress(ctx.err, ctx.interactive, names, ctx.columns);
    return TrainAll(*client, config, &progress);
  }();
  if (ctx.set_interrupt_message) ctx.set_interrupt_message("");
  if (!outcome.ok()) return outcome.status();
  std::vector<std::string> failures;
  for (const FailedTraining& f : outcome->failed) {
    failures.push_back(absl::StrCat(f.model, " (job ", f.job_id, " ", f.error, ")"));
  }
  if (outcome->trained.empty()) {
    return absl::AbortedError(
        absl::StrCat("every training job failed: ", absl::StrJoin(failures, "; ")));
  }
  *ctx.err << "evaluating " << outcome->trained.size() << " models on " << config.test_pairs
           << " held-out test pairs (seed " << config.seed << ")\n";
  INVNET_ASSIGN_OR_RETURN(ExperimentData data, Evaluate(*client, config, *outcome));
  INVNET_ASSIGN_OR_RETURN(ReportFiles report, WriteReport(data, plan.output_dir));
  *ctx.out << config.label << ", " << data.x.rows()
           << " held-out pairs: reconstruction MSE = mean ||x_hat - x||^2\n\n"
           << report.table << "\nreport: " << report.report << "\n";
  if (!failures.empty()) {
    return absl::AbortedError(absl::StrCat("training failed for ", absl::StrJoin(failures, "; "),
                                           " (the report covers the other models)"));
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// The table.

absl::Status RunHelp(const Invocation& inv, const Operands& operands, Context& ctx) {
  *ctx.out << HelpText(operands);
  return absl::OkStatus();
}

const std::vector<Command>& Commands() {
  static const auto* commands = new std::vector<Command>{
      {"health",
       "",
       0,
       0,
       "Check that the server is serving (exit 0 only when SERVING).",
       {"service"},
       "",
       RunHealth},
      {"train",
       "",
       0,
       0,
       "Start a training job and follow it to the end.",
       {"preset", "spec", "model", "loss", "target_space", "dataset", "steps", "batch_size",
        "learning_rate", "seed", "detach"},
       "The request comes from --preset, from --spec (a TrainRequest in protobuf text format),\n"
       "or both; flags override the spec. A spec file looks like\n"
       "  model_name: \"blur\" preset: \"blur64\"\n"
       "  training { loss: LOSS_LOG_DET steps: 500 }\n"
       "--model and --loss are required unless the spec sets them. Without --detach, progress\n"
       "goes to stderr (a live bar on a terminal) and the exit code is 0 only when the job\n"
       "SUCCEEDED.",
       RunTrain},
      {"jobs list", "", 0, 0, "List training jobs, newest first.", {}, "", RunJobsList},
      {"jobs show", "JOB_ID", 1, 1, "Show one training job in detail.", {}, "", RunJobsShow},
      {"jobs cancel",
       "JOB_ID",
       1,
       1,
       "Cancel a queued or running training job.",
       {},
       "",
       RunJobsCancel},
      {"jobs watch",
       "JOB_ID",
       1,
       1,
       "Follow a training job to its end (exit 0 only on success).",
       {},
       "",
       RunJobsWatch},
      {"models list", "", 0, 0, "List the published models.", {}, "", RunModelsList},
      {"models show",
       "NAME",
       1,
       1,
       "Show every version of a model (or one, with --version).",
       {"version"},
       "",
       RunModelsShow},
      {"models delete",
       "NAME",
       1,
       1,
       "Delete one version of a model (--version=N) or all of them (--all_versions).",
       {"version", "all_versions"},
       "",
       RunModelsDelete},
      {"datasets upload",
       "NAME",
       1,
       1,
       "Upload training signals from a .npy or .csv file.",
       {"input", "rows_per_chunk"},
       "One sample per row: [num_samples, dim].",
       RunDatasetsUpload},
      {"datasets list", "", 0, 0, "List the uploaded datasets.", {}, "", RunDatasetsList},
      {"datasets delete", "NAME", 1, 1, "Delete an uploaded dataset.", {}, "", RunDatasetsDelete},
      {"bench",
       "",
       0,
       0,
       "Load-test a running server: throughput and latency percentiles.",
       {"model", "version", "rpc", "batch", "concurrency", "duration", "requests", "rate", "warmup",
        "tolerance"},
       "--concurrency workers send --rpc requests of --batch random samples, closed loop (each\n"
       "sends again when its answer arrives) or at a fixed total --rate. Prints requests/s,\n"
       "samples/s and latency p50/p90/p99/p99.9, like ghz or perf_analyzer.",
       RunBench},
      {"experiment",
       "",
       0,
       0,
       "The paper's study: train one model per loss, compare them, write a report.",
       {"preset", "spec", "name", "losses", "seeds", "steps", "batch_size", "learning_rate",
        "seed", "test_pairs", "output_dir"},
       "Trains one model per loss (--losses; all four by default) on one problem (--preset,\n"
       "bimodal2d by default, or --spec: a TrainRequest in text format without the loss, whose\n"
       "model_name, if set, replaces --name's default) as concurrent jobs named NAME-LOSS,\n"
       "resubmitting when the server is at its --max_jobs limit, with one progress line per\n"
       "job. Then evaluates every model on the same --test_pairs held-out pairs (drawn by the\n"
       "server from the first model's problem with --seed), next to the exact posterior mean,\n"
       "MAP, Wiener and A^+ y (Gaussian-mixture priors only), and writes --output_dir:\n"
       "report.md (tables, definitions, figures), results.csv and SVG figures (grids through\n"
       "phi and phi^-1, samples and reconstructions or test signals, training curves).\n"
       "Prints the results table and the report's path; exit 1 when a job failed (the report\n"
       "then covers the others). Interrupting it leaves the jobs running on the server\n"
       "(invnet jobs cancel JOB_ID stops them). With --seeds=K every loss is trained K times\n"
       "(training and initialisation seeds 0 .. K-1 on top of the spec's), models NAME-LOSS-sS,\n"
       "and the report adds each loss's mean +- standard error over the K runs, saying which\n"
       "differences are smaller than their error.",
       RunExperiment},
      {"reconstruct",
       "",
       0,
       0,
       "Reconstruct signals x from measurements y with a trained model.",
       {"model", "version", "input", "output", "tolerance", "max_iterations", "anderson",
        "anderson_memory", "diagnostics", "posterior_std", "chunk_rows"},
       "--input holds y as [batch, m]; the reconstructions [batch, n] go to --output (CSV on\n"
       "stdout without it). A summary of the solver's convergence goes to stderr; samples that\n"
       "did not converge are reported, not an error. --diagnostics=FILE writes one CSV row per\n"
       "sample: row,iterations,converged,error_bound,forward_residual. --posterior_std=FILE\n"
       "writes the per-sample posterior std that the network itself implies (Laplace at\n"
       "x_hat for divergence models, second-order Tweedie for log-det models; the method is\n"
       "printed). Inputs of more than\n"
       "--chunk_rows rows (or than the server's --max_batch) go in several requests, answered\n"
       "by one model version and concatenated in order.",
       RunReconstruct},
      {"forward",
       "",
       0,
       0,
       "Apply a trained network phi to signals x.",
       {"model", "version", "input", "output", "chunk_rows"},
       "--input holds x as [batch, n]; phi(x) [batch, n] goes to --output (CSV on stdout\n"
       "without it). Large inputs go in chunks, as with reconstruct.",
       RunForward},
      {"pairs",
       "",
       0,
       0,
       "Draw held-out test pairs (x, y) from a model's problem, e.g. a y file to reconstruct.",
       {"model", "version", "count", "seed", "output"},
       "Draws --count signals x from the model's prior and their measurements\n"
       "y = A x + noise (DrawTestPairs; the same --seed gives the same pairs) and writes them\n"
       "next to --output with .x and .y before the extension: --output=pairs.csv writes\n"
       "pairs.x.csv ([count, n]) and pairs.y.csv ([count, m]).",
       RunPairs},
      {"estimate",
       "",
       0,
       0,
       "Exact Bayesian reference estimates for a model's problem.",
       {"model", "version", "input", "output", "estimators", "chunk_rows"},
       "--input holds y as [batch, m]. With one estimator the result goes to --output; with\n"
       "several (the default: all five), each goes to its own file, --output with the\n"
       "estimator's name before the extension (--output=ref.npy writes ref.posterior_mean.npy,\n"
       "ref.map.npy, ...); the files written are listed on stderr. Without --output, each is\n"
       "printed as CSV after a '# name' line. Gaussian-mixture priors only.",
       RunEstimate},
      {"help", "[COMMAND...]", 0, 2, "Show help for the program or a command.", {}, "", RunHelp},
  };
  return *commands;
}

const Command* FindCommand(absl::string_view name) {
  for (const Command& command : Commands()) {
    if (name == command.name) return &command;
  }
  return nullptr;
}

bool IsGroup(absl::string_view word) {
  return std::find(std::begin(kGroups), std::end(kGroups), word) != std::end(kGroups);
}

std::vector<std::string> GroupMembers(absl::string_view group) {
  std::vector<std::string> members;
  for (const Command& command : Commands()) {
    absl::string_view name = command.name;
    if (absl::ConsumePrefix(&name, group) && absl::ConsumePrefix(&name, " ")) {
      members.emplace_back(name);
    }
  }
  return members;
}

// The command named by the first one or two words, and how many words it took.
absl::StatusOr<std::pair<const Command*, size_t>> Resolve(const std::vector<std::string>& args) {
  if (args.empty()) return UsageError("missing command");
  if (IsGroup(args[0])) {
    const std::string members = absl::StrJoin(GroupMembers(args[0]), ", ");
    if (args.size() < 2) {
      return UsageError(absl::StrCat("'", args[0], "' needs a subcommand: ", members));
    }
    const Command* command = FindCommand(absl::StrCat(args[0], " ", args[1]));
    if (command == nullptr) {
      return UsageError(absl::StrCat("unknown command '", args[0], " ", args[1], "' (", args[0],
                                     " subcommands: ", members, ")"));
    }
    return std::make_pair(command, size_t{2});
  }
  const Command* command = FindCommand(args[0]);
  if (command == nullptr) return UsageError(absl::StrCat("unknown command '", args[0], "'"));
  return std::make_pair(command, size_t{1});
}

const FlagInfo* FindFlag(absl::string_view name) {
  for (const FlagInfo& flag : AllFlags()) {
    if (name == flag.name) return &flag;
  }
  return nullptr;
}

std::string FlagSynopsis(const FlagInfo& flag) {
  return *flag.value_name ? absl::StrCat("--", flag.name, "=", flag.value_name)
                          : absl::StrCat("--", flag.name);
}

// Two aligned columns; a '\n' in the second starts a continuation line under it.
void AppendColumns(const std::vector<std::pair<std::string, std::string>>& rows,
                   std::string* text) {
  size_t width = 0;
  for (const auto& row : rows) width = std::max(width, row.first.size());
  const std::string continuation = absl::StrCat("\n", std::string(width + 4, ' '));
  for (const auto& [left, right] : rows) {
    absl::StrAppend(text, "  ", left, std::string(width - left.size() + 2, ' '),
                    absl::StrReplaceAll(right, {{"\n", continuation}}), "\n");
  }
}

std::vector<std::pair<std::string, std::string>> FlagRows(const std::vector<const char*>& names) {
  std::vector<std::pair<std::string, std::string>> rows;
  for (const char* name : names) {
    const FlagInfo& flag = *FindFlag(name);
    rows.emplace_back(FlagSynopsis(flag), flag.help);
  }
  return rows;
}

std::vector<std::pair<std::string, std::string>> GlobalFlagRows() {
  auto rows = FlagRows({std::begin(kGlobalFlags), std::end(kGlobalFlags)});
  rows.emplace_back("--help", "Show help (also: invnet help [COMMAND...]).");
  return rows;
}

std::string CommandSynopsis(const Command& command) {
  return *command.operands ? absl::StrCat(command.name, " ", command.operands) : command.name;
}

std::string CommandHelp(const Command& command) {
  std::string text = absl::StrCat("Usage: invnet ", CommandSynopsis(command), " [flags]\n\n",
                                  command.summary, "\n");
  if (*command.details) absl::StrAppend(&text, "\n", command.details, "\n");
  if (!command.flags.empty()) {
    absl::StrAppend(&text, "\nFlags:\n");
    AppendColumns(FlagRows(command.flags), &text);
  }
  absl::StrAppend(&text, "\nGlobal flags:\n");
  AppendColumns(GlobalFlagRows(), &text);
  return text;
}

std::string GroupHelp(absl::string_view group) {
  std::string text = absl::StrCat("Usage: invnet ", group, " <subcommand> [operands] [flags]\n\n");
  std::vector<std::pair<std::string, std::string>> rows;
  for (const Command& command : Commands()) {
    if (absl::StartsWith(command.name, absl::StrCat(group, " "))) {
      rows.emplace_back(CommandSynopsis(command), command.summary);
    }
  }
  AppendColumns(rows, &text);
  absl::StrAppend(&text, "\nRun 'invnet ", group, " <subcommand> --help' for its flags.\n");
  return text;
}

std::string ProgramHelp() {
  std::string text =
      "invnet: train invertible residual networks for linear inverse problems and reconstruct\n"
      "with them, on an invnet server.\n\n"
      "Usage: invnet <command> [operands] [flags]\n\nCommands:\n";
  std::vector<std::pair<std::string, std::string>> rows;
  for (const Command& command : Commands()) {
    rows.emplace_back(CommandSynopsis(command), command.summary);
  }
  AppendColumns(rows, &text);
  absl::StrAppend(&text, "\nGlobal flags:\n");
  AppendColumns(GlobalFlagRows(), &text);
  absl::StrAppend(&text,
                  "\nRun 'invnet <command> --help' for a command's flags. Flags take the forms\n"
                  "--name=value and --name value; switches also --name and --noname.\n"
                  "Exit codes: 0 success, 1 runtime or RPC error, 2 usage error.\n");
  return text;
}

// --helpfull: every flag of every command, with the commands that take it.
std::string AllFlagsHelp() {
  std::vector<std::pair<std::string, std::string>> rows;
  for (const FlagInfo& flag : AllFlags()) {
    std::vector<std::string> users;
    const bool global =
        std::find_if(std::begin(kGlobalFlags), std::end(kGlobalFlags), [&](const char* name) {
          return absl::string_view(name) == flag.name;
        }) != std::end(kGlobalFlags);
    if (global) {
      users.push_back("every command");
    } else {
      for (const Command& command : Commands()) {
        for (const char* name : command.flags) {
          if (absl::string_view(name) == flag.name) users.push_back(command.name);
        }
      }
    }
    rows.emplace_back(FlagSynopsis(flag),
                      absl::StrCat(flag.help, "\n[", absl::StrJoin(users, ", "), "]"));
  }
  std::string text = "\nAll flags:\n";
  AppendColumns(rows, &text);
  return text;
}

// Edit distance counting a swap of two neighbours as one edit (optimal string alignment), for
// suggesting the flag a typo meant: "modle" is one edit from "model".
size_t EditDistance(absl::string_view a, absl::string_view b) {
  std::vector<std::vector<size_t>> d(a.size() + 1, std::vector<size_t>(b.size() + 1));
  for (size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    for (size_t j = 1; j <= b.size(); ++j) {
      d[i][j] = std::min(
          {d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) {
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.size()][b.size()];
}

std::string HelpHint(const std::vector<std::string>& args) {
  absl::StatusOr<std::pair<const Command*, size_t>> resolved = Resolve(args);
  if (resolved.ok()) return absl::StrCat("invnet ", resolved->first->name, " --help");
  if (!args.empty() && IsGroup(args[0])) return absl::StrCat("invnet ", args[0], " --help");
  return "invnet --help";
}

}  // namespace

const std::vector<FlagInfo>& AllFlags() {
  static const auto* flags = new std::vector<FlagInfo>{
      {"server", "HOST:PORT", "Server address (default localhost:50051)."},
      {"tls", "", "Connect with TLS (default: plaintext), verifying the server's certificate."},
      {"tls_ca_file", "FILE",
       "PEM CA certificates to verify the server with (default: the system's). Needs --tls."},
      {"tls_cert_file", "FILE",
       "PEM client certificate, for servers that require mutual TLS. Needs --tls and\n"
       "--tls_key_file."},
      {"tls_key_file", "FILE", "PEM private key of --tls_cert_file."},
      {"token_file", "FILE",
       "File holding a bearer token, sent with every call (default: the file named by\n"
       "$INVNET_TOKEN_FILE, if set)."},
      {"timeout", "SECONDS",
       "Deadline of each call except watching a job; 0 = none.\n"
       "Default: 30 s for management calls, 10 min for reconstruct/forward/estimate,\n"
       "30 min for uploads."},
      {"service", "NAME",
       "Service to check, e.g. invnet.v1.ReconstructionService (default: the server)."},
      {"preset", "NAME",
       "Named problem with its default architecture and schedule: bimodal2d, blur64\n"
       "(experiment: default bimodal2d unless --spec is given)."},
      {"spec", "FILE", "TrainRequest in protobuf text format; flags override its fields."},
      {"model", "NAME", "Model name: [a-z0-9][a-z0-9_-]{0,62}."},
      {"loss", "LOSS",
       "approximation, reconstruction, log-det or divergence (also accepted: logdet,\n"
       "log_det, LOSS_LOG_DET; any case)."},
      {"target_space", "SPACE",
       "measurement (phi ~ A) or normal (phi ~ A^T A); default: the loss's."},
      {"dataset", "NAME", "Train on an uploaded dataset's signals (needs a problem from --spec)."},
      {"steps", "N", "Optimiser steps (default: the preset's, else 3000)."},
      {"batch_size", "N", "Signals per step (default: the preset's, else 512)."},
      {"learning_rate", "LR", "Adam learning rate (default: the preset's, else 3e-3)."},
      {"seed", "N",
       "train: seed of the training data, noise and probes; experiment, pairs: seed of the\n"
       "held-out test pairs (default 0)."},
      {"detach", "", "Print the job id and return at once instead of following the job."},
      {"version", "N",
       "Model version. reconstruct, forward, estimate, pairs, bench: default the latest;\n"
       "models show: default every version; models delete: no default (--version=N or\n"
       "--all_versions). Alone, 'invnet --version' prints the program's version."},
      {"all_versions", "", "models delete: delete every version of the model."},
      {"input", "FILE", "Input matrix [batch, dim], .npy or .csv."},
      {"output", "FILE", "Output matrix, .npy or .csv (default: CSV on stdout)."},
      {"tolerance", "TOL", "Solver tolerance on each block's error bound (default 1e-5)."},
      {"max_iterations", "N", "Solver iterations per block and sample (default 1000)."},
      {"anderson", "",
       "Anderson acceleration in the fixed-point solver (default on; --anderson=false\n"
       "for the plain iteration)."},
      {"anderson_memory", "K", "Anderson memory, 1..8 (default 5)."},
      {"estimators", "LIST",
       "Comma-separated: posterior_mean, posterior_std, map, wiener, pseudo_inverse\n"
       "(default: all)."},
      {"rows_per_chunk", "N", "Samples per upload message (default: automatic, ~4 MiB)."},
      {"chunk_rows", "N",
       "Rows per request at most (default 100000); larger inputs go in several requests,\n"
       "and fewer rows when the server's --max_batch is smaller."},
      {"diagnostics", "FILE",
       "reconstruct: per-sample CSV (row, iterations, converged, error_bound,\n"
       "forward_residual)."},
      {"posterior_std", "FILE",
       "reconstruct: also the posterior standard deviation the network's Jacobian implies,\n"
       "[batch, n], .npy or .csv (divergence models in normal space, log-det models in\n"
       "measurement space; NaN rows where it is undefined)."},
      {"count", "N", "pairs: test pairs to draw, 1..1000000."},
      {"rpc", "RPC", "bench: reconstruct or forward (default reconstruct)."},
      {"batch", "N", "bench: samples per request (default 1)."},
      {"concurrency", "N", "bench: requests in flight, one per worker (default 1)."},
      {"duration", "SECONDS",
       "bench: time to send measured requests (default 10, or none with --requests),\n"
       "after the warm-up; the report divides by the time until the last answer."},
      {"requests", "N",
       "bench: stop after N measured requests (with --duration: whichever comes first)."},
      {"rate", "PER_SECOND",
       "bench: fixed total arrival rate; latency counts from the scheduled send time\n"
       "(default 0: closed loop)."},
      {"warmup", "SECONDS", "bench: time before measuring starts (default 1)."},
      {"name", "NAME", "experiment: prefix of the model names, NAME-LOSS (default experiment)."},
      {"losses", "LIST",
       "experiment: comma-separated losses to train (default\n"
       "approximation,log-det,divergence,reconstruction)."},
      {"test_pairs", "N", "experiment: held-out test pairs to evaluate on (default 5000)."},
      {"seeds", "K",
       "experiment: train each loss K times with different training seeds and report mean +-\n"
       "standard error (default 1, at most 100)."},
      {"output_dir", "DIR",
       "experiment: report directory (default ./invnet-report-LABEL, LABEL being --name, else\n"
       "the spec's model_name, else the preset's or the spec file's name)."},
  };
  return *flags;
}

const char* Version() { return INVNET_VERSION; }

std::string NearestFlag(absl::string_view name, const std::vector<std::string>& candidates) {
  std::vector<std::string> all;
  if (candidates.empty()) {
    for (const FlagInfo& flag : AllFlags()) all.emplace_back(flag.name);
  }
  const std::vector<std::string>& pool = candidates.empty() ? all : candidates;
  std::string best;
  size_t best_distance = std::max<size_t>(1, name.size() / 3) + 1;
  for (const std::string& candidate : pool) {
    const size_t distance = EditDistance(name, candidate);
    if (distance < best_distance) {
      best = candidate;
      best_distance = distance;
    }
  }
  return best;
}

absl::Status CheckServerAddress(absl::string_view target) {
  if (target.empty()) return UsageError("--server must not be empty");
  // A gRPC target URI with a scheme goes to gRPC as it is.
  for (absl::string_view scheme : {"dns:", "unix:", "unix-abstract:", "ipv4:", "ipv6:"}) {
    if (absl::StartsWith(target, scheme)) return absl::OkStatus();
  }
  const size_t colon = target.rfind(':');
  const bool bracketed = absl::StartsWith(target, "[");
  const bool has_port =
      colon != absl::string_view::npos && (!bracketed || (colon > 0 && target[colon - 1] == ']'));
  if (!has_port || colon == 0 ||
      (!bracketed && target.substr(0, colon).find(':') != absl::string_view::npos)) {
    return UsageError(absl::StrCat("--server '", target,
                                   "' needs a port: HOST:PORT, e.g. localhost:50051 (IPv6: "
                                   "[::1]:50051)"));
  }
  const absl::string_view port_text = target.substr(colon + 1);
  int port = 0;
  if (port_text.empty() || port_text.size() > 5 ||
      !std::all_of(port_text.begin(), port_text.end(), absl::ascii_isdigit) ||
      !absl::SimpleAtoi(port_text, &port) || port < 1 || port > 65535) {
    return UsageError(absl::StrCat("--server '", target, "': the port '", port_text,
                                   "' must be a number in 1..65535"));
  }
  return absl::OkStatus();
}

std::string FlagHelp(absl::string_view name) {
  const FlagInfo* flag = FindFlag(name);
  return flag == nullptr ? "" : flag->help;
}

absl::Status UsageError(absl::string_view message) {
  absl::Status status = absl::InvalidArgumentError(message);
  status.SetPayload(kUsageErrorPayload, absl::Cord("1"));
  return status;
}

bool IsUsageError(const absl::Status& status) {
  return status.GetPayload(kUsageErrorPayload).has_value();
}

int ExitCode(const absl::Status& status) {
  if (status.ok()) return 0;
  return IsUsageError(status) ? 2 : 1;
}

std::string HelpText(const std::vector<std::string>& words) {
  if (words.empty()) return ProgramHelp();
  if (IsGroup(words[0]) && words.size() == 1) return GroupHelp(words[0]);
  absl::StatusOr<std::pair<const Command*, size_t>> resolved = Resolve(words);
  if (!resolved.ok()) return ProgramHelp();
  return CommandHelp(*resolved->first);
}

absl::StatusOr<v1::TrainRequest> BuildTrainRequest(const Invocation& inv) {
  const CliFlags& flags = inv.flags;
  v1::TrainRequest request;
  if (inv.has("spec")) {
    INVNET_ASSIGN_OR_RETURN(request, ReadSpec(flags.spec));
  }
  if (inv.has("preset")) {
    if (flags.preset.empty()) return UsageError("--preset must not be empty");
    request.set_preset(flags.preset);
  }
  if (request.preset().empty() && !request.has_problem()) {
    return UsageError(
        "train needs --preset NAME (bimodal2d, blur64) or a --spec FILE with a problem");
  }
  if (inv.has("model")) request.set_model_name(flags.model);
  if (request.model_name().empty()) {
    return UsageError("--model NAME is required (or model_name in the --spec file)");
  }
  v1::Training* training = request.mutable_training();
  if (inv.has("loss")) {
    INVNET_ASSIGN_OR_RETURN(v1::Loss loss, ParseLoss(flags.loss));
    training->set_loss(loss);
  }
  if (training->loss() == v1::LOSS_UNSPECIFIED) {
    return UsageError(
        "--loss is required (approximation, reconstruction, log-det or divergence), or "
        "training.loss in the --spec file");
  }
  if (inv.has("target_space")) {
    INVNET_ASSIGN_OR_RETURN(v1::TargetSpace space, ParseTargetSpace(flags.target_space));
    training->set_target_space(space);
  }
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
  if (inv.has("seed")) training->set_seed(flags.seed);
  if (inv.has("dataset")) {
    if (flags.dataset.empty()) return UsageError("--dataset must not be empty");
    // A problem in the request replaces the preset's whole problem, so a dataset alone would
    // leave it without an operator.
    if (!request.problem().has_operator_()) {
      return UsageError(
          "--dataset needs a problem with an operator from --spec (a problem in the request "
          "replaces the preset's problem)");
    }
    request.mutable_problem()->set_dataset(flags.dataset);
  }
  return request;
}

absl::StatusOr<ExperimentPlan> BuildExperimentPlan(const Invocation& inv) {
  const CliFlags& flags = inv.flags;
  ExperimentPlan plan;
  ExperimentConfig& config = plan.config;
  v1::TrainRequest& base = config.base;
  if (inv.has("spec")) {
    INVNET_ASSIGN_OR_RETURN(base, ReadSpec(flags.spec));
    if (base.training().loss() != v1::LOSS_UNSPECIFIED) {
      return UsageError(absl::StrCat("--spec ", flags.spec,
                                     " sets training.loss; an experiment trains one model per loss "
                                     "(choose them with --losses)"));
    }
    config.label = std::filesystem::path(flags.spec).stem().string();
  }
  if (inv.has("preset")) {
    if (flags.preset.empty()) return UsageError("--preset must not be empty");
    base.set_preset(flags.preset);
  } else if (!inv.has("spec")) {
    base.set_preset("bimodal2d");
  }
  if (!inv.has("spec")) config.label = base.preset();
  if (base.preset().empty() && !base.has_problem()) {
    return UsageError(absl::StrCat("--spec ", flags.spec,
                                   " has neither a preset nor a problem (or give --preset)"));
  }
  config.name_prefix = flags.name;
  if (!inv.has("name") && !base.model_name().empty()) config.name_prefix = base.model_name();
  // A chosen name (--name, or the spec's model_name) names the report too, so that the report
  // and its models go by one name; otherwise the preset's or the spec file's name.
  if (inv.has("name") || !base.model_name().empty()) config.label = config.name_prefix;
  base.clear_model_name();
  if (flags.seeds < 1 || flags.seeds > kMaxExperimentSeeds) {
    return UsageError(absl::StrCat("--seeds must lie in [1, ", kMaxExperimentSeeds, "], got ",
                                   flags.seeds));
  }
  config.training_seeds = flags.seeds;
  // The longest model name is NAME-reconstruction (NAME-reconstruction-s99 with --seeds); the
  // server allows [a-z0-9][a-z0-9_-]{0,62}.
  const std::string& prefix = config.name_prefix;
  const bool valid_name =
      !prefix.empty() && prefix.size() <= 48 &&
      std::all_of(prefix.begin(), prefix.end(),
                  [](char c) {
                    return absl::ascii_islower(c) || absl::ascii_isdigit(c) || c == '-' || c == '_';
                  }) &&
      (absl::ascii_islower(prefix[0]) || absl::ascii_isdigit(prefix[0]));
  if (!valid_name) {
    return UsageError(absl::StrCat("--name '", prefix,
                                   "' must match [a-z0-9][a-z0-9_-]* and have at most 48 "
                                   "characters (models are named NAME-LOSS)"));
  }
  absl::StatusOr<std::vector<v1::Loss>> losses = ParseLossList(flags.losses);
  if (!losses.ok()) return UsageError(absl::StrCat("--losses: ", losses.status().message()));
  config.losses = *std::move(losses);
  v1::Training* training = base.mutable_training();
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
  if (flags.test_pairs < 1 || flags.test_pairs > 1000000) {
    return UsageError(
        absl::StrCat("--test_pairs must lie in [1, 1000000], got ", flags.test_pairs));
  }
  config.test_pairs = flags.test_pairs;
  config.seed = flags.seed;
  for (const PlannedJob& job : PlanJobs(config)) {
    if (job.model.size() > 63) {
      return UsageError(absl::StrCat("model name ", job.model,
                                     " would exceed the server's 63 characters; shorten --name"));
    }
  }
  if (inv.has("output_dir") && flags.output_dir.empty()) {
    return UsageError("--output_dir must not be empty");
  }
  plan.output_dir =
      flags.output_dir.empty() ? absl::StrCat("invnet-report-", config.label) : flags.output_dir;
  return plan;
}

namespace {

// "unknown flag '--modle'; did you mean --model?", the suggestion taken from the flags of the
// command named by `args` when it resolves, else from all flags.
std::string UnknownFlagMessage(absl::string_view name, const std::vector<std::string>& args) {
  std::vector<std::string> candidates;
  absl::StatusOr<std::pair<const Command*, size_t>> resolved = Resolve(args);
  if (resolved.ok()) {
    candidates.assign(std::begin(kGlobalFlags), std::end(kGlobalFlags));
    candidates.insert(candidates.end(), resolved->first->flags.begin(),
                      resolved->first->flags.end());
  }
  std::string message = absl::StrCat("unknown flag '--", name, "'");
  std::string nearest = NearestFlag(name, candidates);
  if (nearest.empty() && resolved.ok()) {
    nearest = NearestFlag(name);
    if (!nearest.empty()) {
      absl::StrAppend(&message, "; --", nearest, " exists but does not apply to 'invnet ",
                      resolved->first->name, "'");
      return message;
    }
  }
  if (!nearest.empty()) absl::StrAppend(&message, "; did you mean --", nearest, "?");
  return message;
}

}  // namespace

absl::StatusOr<LoadOptions> BuildLoadOptions(const Invocation& inv) {
  INVNET_RETURN_IF_ERROR(RequireFlag(inv, "model", inv.flags.model, "NAME"));
  const CliFlags& f = inv.flags;
  if (f.rpc != "reconstruct" && f.rpc != "forward") {
    return UsageError(absl::StrCat("--rpc must be reconstruct or forward, got '", f.rpc, "'"));
  }
  INVNET_RETURN_IF_ERROR(RequireAtLeast<int64_t>("batch", f.batch, 1));
  INVNET_RETURN_IF_ERROR(RequireAtLeast<int64_t>("concurrency", f.concurrency, 1));
  INVNET_RETURN_IF_ERROR(RequireAtLeast<int64_t>("requests", f.requests, 0));
  INVNET_RETURN_IF_ERROR(RequirePositive("duration", f.duration));
  if (!(f.rate >= 0) || !(f.warmup >= 0)) return UsageError("--rate and --warmup must be >= 0");
  if (inv.has("tolerance")) INVNET_RETURN_IF_ERROR(RequirePositive("tolerance", f.tolerance));
  LoadOptions options;
  options.rpc = f.rpc;
  options.model = f.model;
  options.batch = f.batch;
  options.concurrency = static_cast<int>(f.concurrency);
  // --requests alone means "until N are done": --duration's default must not cut it short.
  options.duration =
      f.requests > 0 && !inv.has("duration") ? absl::InfiniteDuration() : absl::Seconds(f.duration);
  options.requests = f.requests;
  options.rate = f.rate;
  options.warmup = absl::Seconds(f.warmup);
  if (inv.has("tolerance")) options.tolerance = f.tolerance;
  return options;
}

absl::Status Run(const Invocation& inv, Context& ctx) {
  if (!inv.unknown_flags.empty()) {
    return UsageError(UnknownFlagMessage(inv.unknown_flags.front(), inv.args));
  }
  if (!inv.flag_error.empty()) return UsageError(inv.flag_error);
  if (inv.help) {
    *ctx.out << HelpText(inv.args);
    if (inv.help_full) *ctx.out << AllFlagsHelp();
    return absl::OkStatus();
  }
  if (inv.version_requested) {
    if (!inv.args.empty()) {
      return UsageError(
          "--version needs a value N (the model version); 'invnet --version' alone prints the "
          "program's version");
    }
    *ctx.out << "invnet " << Version() << "\n";
    return absl::OkStatus();
  }
  INVNET_ASSIGN_OR_RETURN(auto resolved, Resolve(inv.args));
  const Command& command = *resolved.first;
  const Operands operands(inv.args.begin() + static_cast<std::ptrdiff_t>(resolved.second),
                          inv.args.end());
  if (operands.size() < command.min_operands || operands.size() > command.max_operands) {
    if (operands.size() > command.max_operands) {
      return UsageError(absl::StrCat("unexpected argument '", operands[command.max_operands],
                                     "' for 'invnet ", command.name, "'"));
    }
    return UsageError(absl::StrCat("'invnet ", command.name, "' needs ", command.operands));
  }
  for (const std::string& flag : inv.specified) {
    const bool global =
        std::find(std::begin(kGlobalFlags), std::end(kGlobalFlags), flag) != std::end(kGlobalFlags);
    const bool accepted =
        std::find(command.flags.begin(), command.flags.end(), flag) != command.flags.end();
    if (!global && !accepted) {
      return UsageError(absl::StrCat("--", flag, " does not apply to 'invnet ", command.name, "'"));
    }
  }
  return command.run(inv, operands, ctx);
}

namespace {

// gRPC's UNAVAILABLE for a server that could not be reached ("failed to connect to all
// addresses", "Connection refused", a name that does not resolve), as opposed to one that
// answered UNAVAILABLE itself (shutting down, a model loading).
bool IsConnectFailure(const absl::Status& status) {
  if (status.code() != absl::StatusCode::kUnavailable) return false;
  const std::string message = absl::AsciiStrToLower(status.message());
  for (absl::string_view mark :
       {"failed to connect", "connection refused", "connect failed", "dns resolution failed",
        "name resolution", "no route to host", "connection reset", "socket closed"}) {
    if (absl::StrContains(message, mark)) return true;
  }
  return false;
}

}  // namespace

int Main(const Invocation& inv, Context& ctx) {
  if (!ctx.connect) {
    ctx.connect = [](const std::string& target, const ClientOptions& options) {
      return InvnetClient::Connect(target, options);
    };
  }
  const absl::Status status = Run(inv, ctx);
  if (status.ok()) return 0;
  if (IsUsageError(status)) {
    *ctx.err << "invnet: " << status.message() << "\nRun '" << HelpHint(inv.args)
             << "' for usage.\n";
  } else {
    *ctx.err << "invnet: error: " << absl::StatusCodeToString(status.code()) << ": "
             << status.message();
    if (IsConnectFailure(status)) {
      *ctx.err << "; is invnet-server running at " << inv.flags.server << "? (--server)";
    } else if (status.code() == absl::StatusCode::kUnavailable ||
               status.code() == absl::StatusCode::kDeadlineExceeded) {
      *ctx.err << " (server " << inv.flags.server << ")";
    }
    if (const std::string id = RequestIdOf(status); !id.empty()) {
      *ctx.err << " (request id " << id << ")";
    }
    *ctx.err << "\n";
  }
  return ExitCode(status);
}

}  // namespace invnet::client::cli
