// invnet train, invnet jobs list|show|cancel|watch.

#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "client/cli.h"
#include "client/cli_internal.h"
#include "client/format.h"
#include "client/progress.h"
#include "google/protobuf/io/tokenizer.h"
#include "google/protobuf/text_format.h"
#include "proto/base/file_io.h"
#include "proto/base/status_macros.h"

namespace invnet::client::cli {

namespace {

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

}  // namespace

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
  fields.push_back(
      {"target space", job.target_space_reason().empty()
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
  INVNET_RETURN_IF_ERROR(ApplyScheduleFlags(inv, training));
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

}  // namespace invnet::client::cli
