// The command table and everything generated from it: resolving a command line to a command,
// the help texts, and the suggestions for mistyped flags.
#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/strip.h"
#include "client/cli.h"
#include "client/cli_internal.h"

namespace invnet::client::cli {

namespace {

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

absl::Status RunHelp(const Invocation& inv, const Operands& operands, Context& ctx) {
  *ctx.out << HelpText(operands);
  return absl::OkStatus();
}

}  // namespace


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
       {"preset", "spec", "name", "losses", "seeds", "steps", "batch_size", "learning_rate", "seed",
        "test_pairs", "output_dir"},
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
      {"evaluate",
       "",
       0,
       0,
       "Score trained models of one problem on the same held-out pairs (Evaluate).",
       {"model", "count", "seed", "tolerance"},
       "--model names one or more models of one problem, comma-separated (their latest\n"
       "versions). The server draws --count held-out pairs with --seed (those `invnet pairs`\n"
       "draws for the first model) and prints per model the MSE, its ratio to the exact\n"
       "posterior mean's, the RMS distances to the exact PM and MAP, the forward error, the\n"
       "share converged, the iterations and the network's own posterior std against the\n"
       "exact one where its loss defines it, beside the exact estimators (Gaussian-mixture\n"
       "priors).",
       RunEvaluate},
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

std::string HelpHint(const std::vector<std::string>& args) {
  absl::StatusOr<std::pair<const Command*, size_t>> resolved = Resolve(args);
  if (resolved.ok()) return absl::StrCat("invnet ", resolved->first->name, " --help");
  if (!args.empty() && IsGroup(args[0])) return absl::StrCat("invnet ", args[0], " --help");
  return "invnet --help";
}

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

std::string HelpText(const std::vector<std::string>& words) {
  if (words.empty()) return ProgramHelp();
  if (IsGroup(words[0]) && words.size() == 1) return GroupHelp(words[0]);
  absl::StatusOr<std::pair<const Command*, size_t>> resolved = Resolve(words);
  if (!resolved.ok()) return ProgramHelp();
  return CommandHelp(*resolved->first);
}

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

}  // namespace invnet::client::cli
