#ifndef INVNET_CLIENT_CLI_INTERNAL_H_
#define INVNET_CLIENT_CLI_INTERNAL_H_

// What the CLI's files share (not part of the library's interface: client/cli.h is). One file
// per command group implements its commands:
//   cli_jobs.cc        train, jobs list|show|cancel|watch
//   cli_repository.cc  health, models list|show|delete, datasets upload|list|delete
//   cli_inference.cc   reconstruct, forward, estimate, pairs, bench
//   cli_experiment.cc  experiment
//   cli_commands.cc    the command table, help, flag suggestions
//   cli_common.cc      the helpers below
//   cli_flags.cc       the flag table (client/cli_flags.h)
//   cli.cc             Run and Main: dispatch, exit codes, error lines

#include <cstdint>
#include <memory>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "client/cli.h"
#include "client/dense_tensor.h"
#include "invnet/v1/model.pb.h"
#include "invnet/v1/model_service.pb.h"
#include "invnet/v1/training_service.pb.h"

namespace invnet::client::cli {

using Operands = std::vector<std::string>;
using CommandFn = absl::Status (*)(const Invocation&, const Operands&, Context&);

// One row of the command table (cli_commands.cc).
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

// The flags every command takes, and the words that group commands ("jobs list").
inline constexpr const char* kGlobalFlags[] = {
    "server", "timeout", "tls", "tls_ca_file", "tls_cert_file", "tls_key_file", "token_file"};
inline constexpr const char* kGroups[] = {"jobs", "models", "datasets"};

// cli_commands.cc
const std::vector<Command>& Commands();
// The command named by the first one or two words, and how many words it took.
absl::StatusOr<std::pair<const Command*, size_t>> Resolve(const std::vector<std::string>& args);
// --helpfull: every flag of every command, with the commands that take it.
std::string AllFlagsHelp();
// "invnet jobs list --help": where a usage error points for help.
std::string HelpHint(const std::vector<std::string>& args);
// "unknown flag '--modle'; did you mean --model?", the suggestion taken from the flags of the
// command named by `args` when it resolves, else from all flags.
std::string UnknownFlagMessage(absl::string_view name, const std::vector<std::string>& args);

// cli_common.cc
// A client for the --server, --timeout, TLS and token flags (usage errors for bad ones).
absl::StatusOr<std::unique_ptr<InvnetClient>> ConnectFor(const Invocation& inv, Context& ctx);
// A usage error "--flag VALUE_NAME is required" unless the flag was given a non-empty value.
absl::Status RequireFlag(const Invocation& inv, absl::string_view flag, absl::string_view value,
                         absl::string_view value_name);
template <typename T>
absl::Status RequireAtLeast(absl::string_view flag, T value, T minimum) {
  if (!(value >= minimum)) {
    return UsageError(absl::StrCat("--", flag, " must be >= ", minimum, ", got ", value));
  }
  return absl::OkStatus();
}
// A usage error unless `value` is finite and > 0.
absl::Status RequirePositive(absl::string_view flag, double value);
// The --input matrix, checked (shape, finiteness) before anything is sent.
absl::StatusOr<DenseTensor> ReadInput(const Invocation& inv);
// A bad --output extension is a usage error found before any work is done.
absl::Status CheckOutputFlag(const Invocation& inv);
// Writes `matrix` to `path`, or as CSV to ctx.out when `path` is empty.
absl::Status WriteResult(const DenseTensor& matrix, const std::string& path, Context& ctx);
// --steps, --batch_size and --learning_rate, checked, into `training` (train and experiment).
absl::Status ApplyScheduleFlags(const Invocation& inv, v1::Training* training);
// "12.5%", "-" when `whole` is not positive.
std::string Percent(int64_t part, int64_t whole);
// "key:  value" lines with the values aligned.
void PrintFields(std::ostream& out, const std::vector<std::pair<std::string, std::string>>& fields,
                 absl::string_view indent = "");
// One-line summaries for jobs show and models show ("-" for what the request left unset).
std::string ArchitectureSummary(const v1::Architecture& a);
// `problem` resolves a loss weight left at its default, which servers before the weight was
// resolved at Train marked negative (delta^2, with delta the problem's noise level).
std::string TrainingSummary(const v1::Training& t, const v1::Problem& problem);
std::string ProblemSummary(const v1::Problem& problem);
// The model version's metric `name` formatted, "-" when it has none.
std::string FindMetric(const v1::ModelVersion& version, const std::string& name);

// cli_jobs.cc: a TrainRequest in protobuf text format from `path` (also experiment's --spec).
absl::StatusOr<v1::TrainRequest> ReadSpec(const std::string& path);

// The commands, each in its group's file.
absl::Status RunHealth(const Invocation& inv, const Operands& operands, Context& ctx);
absl::Status RunTrain(const Invocation& inv, const Operands& operands, Context& ctx);
absl::Status RunJobsList(const Invocation& inv, const Operands& operands, Context& ctx);
absl::Status RunJobsShow(const Invocation& inv, const Operands& operands, Context& ctx);
absl::Status RunJobsCancel(const Invocation& inv, const Operands& operands, Context& ctx);
absl::Status RunJobsWatch(const Invocation& inv, const Operands& operands, Context& ctx);
absl::Status RunModelsList(const Invocation& inv, const Operands& operands, Context& ctx);
absl::Status RunModelsShow(const Invocation& inv, const Operands& operands, Context& ctx);
absl::Status RunModelsDelete(const Invocation& inv, const Operands& operands, Context& ctx);
absl::Status RunDatasetsUpload(const Invocation& inv, const Operands& operands, Context& ctx);
absl::Status RunDatasetsList(const Invocation& inv, const Operands& operands, Context& ctx);
absl::Status RunDatasetsDelete(const Invocation& inv, const Operands& operands, Context& ctx);
absl::Status RunReconstruct(const Invocation& inv, const Operands& operands, Context& ctx);
absl::Status RunForward(const Invocation& inv, const Operands& operands, Context& ctx);
absl::Status RunEstimate(const Invocation& inv, const Operands& operands, Context& ctx);
absl::Status RunPairs(const Invocation& inv, const Operands& operands, Context& ctx);
absl::Status RunBench(const Invocation& inv, const Operands& operands, Context& ctx);
absl::Status RunExperiment(const Invocation& inv, const Operands& operands, Context& ctx);
absl::Status RunEvaluate(const Invocation& inv, const Operands& operands, Context& ctx);

}  // namespace invnet::client::cli

#endif  // INVNET_CLIENT_CLI_INTERNAL_H_
