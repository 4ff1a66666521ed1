#ifndef INVNET_CLIENT_CLI_H_
#define INVNET_CLIENT_CLI_H_

// The `invnet` command line as a library: the subcommand table, its help text and one
// function per subcommand, each returning absl::Status. cli_main.cc only turns argv into an
// Invocation (absl flags) and calls Main(); tests build Invocations directly and run them
// against a fake server.
//
// Exit codes (ExitCode): 0 success; 2 usage error (unknown subcommand, wrong operands, missing
// required flag, bad flag value, a flag the subcommand does not take); 1 anything else (RPC
// errors, unreadable or malformed files, a training job that did not succeed).
//
// Thread-safety: the functions keep no state of their own; a Context's streams must not be
// written by anyone else while a command runs.

#include <cstdint>
#include <functional>
#include <memory>
#include <ostream>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "client/cli_flags.h"
#include "client/client.h"
#include "client/experiment.h"
#include "client/load_generator.h"
#include "invnet/v1/training_service.pb.h"

namespace invnet::client::cli {


// One parsed command line.
struct Invocation {
  // Positional words: the subcommand ("jobs", "show") and its operands ("JOB_ID").
  std::vector<std::string> args;
  CliFlags flags;
  // Names of the flags given explicitly; a flag not listed here keeps its server-side default
  // (a TrainRequest field stays unset, and so on).
  std::set<std::string> specified;
  // --help (or -h) was given; --helpfull also lists every flag of every command.
  bool help = false;
  bool help_full = false;
  // --version without a value (the model version takes one): print the program's version.
  bool version_requested = false;
  // Flags the parser did not know (names without the dashes), reported by Run() with the
  // nearest known flag and the command's help; and the first other flag-parsing error
  // ("flag --model needs a value"), reported as a usage error.
  std::vector<std::string> unknown_flags;
  std::string flag_error;

  bool has(absl::string_view flag) const { return specified.count(std::string(flag)) > 0; }
};

struct Context {
  // Creates the client for --server with the options the flags ask for. Called at most once,
  // and only by subcommands that talk to the server. Main() fills it with InvnetClient::Connect
  // when it is empty.
  std::function<absl::StatusOr<std::unique_ptr<InvnetClient>>(const std::string& target,
                                                              const ClientOptions& options)>
      connect;
  std::ostream* out = nullptr;  // results: tables, files written to stdout
  std::ostream* err = nullptr;  // progress, summaries, errors
  // `err` is a terminal: draw the live progress bar.
  bool interactive = false;
  // The width of that terminal in columns (0: unknown).
  int columns = 0;
  // Called by `train`, `jobs watch` and `experiment` while they follow jobs, with what to print
  // if the user interrupts the command (Ctrl-C), and with "" when that is over. The binary
  // prints the last message from its SIGINT handler; null: nobody listens.
  std::function<void(const std::string& message)> set_interrupt_message;
};


// A usage error (INVALID_ARGUMENT marked with a payload), and the test for one.
absl::Status UsageError(absl::string_view message);
bool IsUsageError(const absl::Status& status);
// 0 for OK, 2 for a usage error, 1 otherwise.
int ExitCode(const absl::Status& status);

// The program's version, CMake's PROJECT_VERSION ("0.1.0").
const char* Version();

// The flag of AllFlags() nearest to `name` by edit distance among `candidates` (all flags when
// empty), or "" when none is close (more than a third of the letters differ).
std::string NearestFlag(absl::string_view name, const std::vector<std::string>& candidates = {});

// Checks a --server value: "HOST:PORT" with PORT in 1..65535 ("[::1]:PORT" for IPv6), or a gRPC
// target URI with a scheme ("dns:///host:port", "unix:/path", "ipv4:...", passed as given).
// A usage error naming --server otherwise (e.g. "localhost", which gRPC would dial on 443).
absl::Status CheckServerAddress(absl::string_view target);

// The help text: of the whole program for {}, of a command group for {"jobs"}, of one
// command for {"jobs", "list"}. Unknown words fall back to the program's help.
std::string HelpText(const std::vector<std::string>& words);

// Runs the invocation: help goes to ctx.out; results to ctx.out, progress and summaries to
// ctx.err. Returns the command's status without printing it.
absl::Status Run(const Invocation& invocation, Context& ctx);

// Run() plus reporting: prints an error line (and, for usage errors, where to find help) to
// ctx.err and returns the exit code.
int Main(const Invocation& invocation, Context& ctx);

// Exposed for tests: the TrainRequest that `invnet train` sends for these flags (spec file
// first, then flag overrides). Usage errors for missing or bad flags; the file's error when
// the spec cannot be read or parsed.
absl::StatusOr<v1::TrainRequest> BuildTrainRequest(const Invocation& invocation);

// Exposed for tests: what `invnet experiment` runs for these flags (without the server
// address) and the report directory it writes. Usage errors for bad flags (unknown or repeated
// loss, --test_pairs outside [1, 1e6], a name that cannot prefix a model name, a spec that sets
// training.loss or has no problem); the file's error when the spec cannot be read or parsed.
struct ExperimentPlan {
  ExperimentConfig config;
  std::string output_dir;
};
absl::StatusOr<ExperimentPlan> BuildExperimentPlan(const Invocation& invocation);

// Exposed for tests: the load `invnet bench` runs for these flags (without the model's version
// and dimension, which come from the server). --requests alone runs until that many requests
// are done (no time limit); with --duration too, whichever comes first. Usage errors for bad
// flags.
absl::StatusOr<LoadOptions> BuildLoadOptions(const Invocation& invocation);

}  // namespace invnet::client::cli

#endif  // INVNET_CLIENT_CLI_H_
