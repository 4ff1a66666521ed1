// invnet experiment: the paper's study as one command (client/experiment.h does the work).

#include <algorithm>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "client/cli.h"
#include "client/cli_internal.h"
#include "client/experiment.h"
#include "client/progress.h"
#include "client/report.h"
#include "proto/base/status_macros.h"

namespace invnet::client::cli {

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
  *ctx.out << config.label << ", " << config.test_pairs
           << " held-out pairs: reconstruction MSE = mean ||x_hat - x||^2\n\n"
           << report.table << "\nreport: " << report.report << "\n";
  if (!failures.empty()) {
    return absl::AbortedError(absl::StrCat("training failed for ", absl::StrJoin(failures, "; "),
                                           " (the report covers the other models)"));
  }
  return absl::OkStatus();
}

absl::Status RunEvaluate(const Invocation& inv, const Operands&, Context& ctx) {
  INVNET_RETURN_IF_ERROR(RequireFlag(inv, "model", inv.flags.model, "NAME[,NAME...]"));
  if (!inv.has("count")) return UsageError("--count N is required");
  INVNET_RETURN_IF_ERROR(RequireAtLeast<int64_t>("count", inv.flags.count, 1));
  v1::EvaluateRequest request;
  for (absl::string_view name : absl::StrSplit(inv.flags.model, ',', absl::SkipWhitespace())) {
    request.add_models()->set_model(std::string(absl::StripAsciiWhitespace(name)));
  }
  request.set_count(inv.flags.count);
  request.set_seed(inv.flags.seed);
  request.set_posterior_std(true);
  if (inv.has("tolerance")) {
    INVNET_RETURN_IF_ERROR(RequirePositive("tolerance", inv.flags.tolerance));
    request.mutable_solver()->set_tolerance(inv.flags.tolerance);
  }
  INVNET_ASSIGN_OR_RETURN(auto client, ConnectFor(inv, ctx));
  INVNET_ASSIGN_OR_RETURN(v1::EvaluateResponse response, client->Evaluate(request));
  std::vector<ResultRow> rows = ReferenceRows(
      std::vector<v1::EstimatorScore>(response.references().begin(), response.references().end()));
  for (const v1::EstimatorScore& score : response.models()) {
    ResultRow row;
    row.label = absl::StrCat(score.model(), " v", score.version());
    row.key = score.model();
    row.network = true;
    row.score = score;
    rows.push_back(std::move(row));
  }
  *ctx.out << response.count() << " held-out pairs (seed " << response.seed()
           << "): reconstruction MSE = mean ||x_hat - x||^2\n\n"
           << ResultsMarkdownTable(rows);
  if (!response.references_unavailable().empty()) {
    *ctx.err << "no exact references: " << response.references_unavailable() << "\n";
  }
  for (const v1::EstimatorScore& score : response.models()) {
    if (!score.posterior_std_unavailable().empty()) {
      *ctx.err << score.model() << ": no posterior std: " << score.posterior_std_unavailable()
               << "\n";
    }
  }
  return absl::OkStatus();
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
    return UsageError(
        absl::StrCat("--seeds must lie in [1, ", kMaxExperimentSeeds, "], got ", flags.seeds));
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
  INVNET_RETURN_IF_ERROR(ApplyScheduleFlags(inv, training));
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

}  // namespace invnet::client::cli
