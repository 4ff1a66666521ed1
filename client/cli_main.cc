// invnet: the command-line client. Everything but argv handling lives in client/cli.h.
//
// The flags are absl flags, but they are parsed here with absl's reflection API rather than
// absl::ParseCommandLine, for two reasons: ParseCommandLine exits with status 1 on an unknown
// flag or a bad value, while invnet's contract is 2 for every usage error; and its --help
// lists flags, not subcommands. Not linking absl::flags_parse / absl::flags_usage also keeps
// absl's own --version flag out of the binary, so --version can mean the model version (and,
// without a value, the program's version).

#include <sys/ioctl.h>
#include <unistd.h>

#include <atomic>
#include <list>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <set>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/reflection.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "client/cli.h"

namespace cli = invnet::client::cli;

// Defaults and help come from cli.h, the single description of the command line.
#define INVNET_CLI_FLAG(type, name) \
  ABSL_FLAG(type, name, cli::CliFlags{}.name, cli::FlagHelp(#name))

INVNET_CLI_FLAG(std::string, server);
INVNET_CLI_FLAG(double, timeout);
INVNET_CLI_FLAG(bool, tls);
INVNET_CLI_FLAG(std::string, tls_ca_file);
INVNET_CLI_FLAG(std::string, tls_cert_file);
INVNET_CLI_FLAG(std::string, tls_key_file);
INVNET_CLI_FLAG(std::string, token_file);
INVNET_CLI_FLAG(std::string, service);
INVNET_CLI_FLAG(std::string, preset);
INVNET_CLI_FLAG(std::string, spec);
INVNET_CLI_FLAG(std::string, model);
INVNET_CLI_FLAG(std::string, loss);
INVNET_CLI_FLAG(std::string, target_space);
INVNET_CLI_FLAG(std::string, dataset);
INVNET_CLI_FLAG(int64_t, steps);
INVNET_CLI_FLAG(int64_t, batch_size);
INVNET_CLI_FLAG(double, learning_rate);
INVNET_CLI_FLAG(uint64_t, seed);
INVNET_CLI_FLAG(bool, detach);
INVNET_CLI_FLAG(bool, all_versions);
INVNET_CLI_FLAG(int64_t, version);
INVNET_CLI_FLAG(std::string, input);
INVNET_CLI_FLAG(std::string, output);
INVNET_CLI_FLAG(double, tolerance);
INVNET_CLI_FLAG(int64_t, max_iterations);
INVNET_CLI_FLAG(bool, anderson);
INVNET_CLI_FLAG(int64_t, anderson_memory);
INVNET_CLI_FLAG(std::string, estimators);
INVNET_CLI_FLAG(int64_t, rows_per_chunk);
INVNET_CLI_FLAG(int64_t, chunk_rows);
INVNET_CLI_FLAG(std::string, diagnostics);
INVNET_CLI_FLAG(std::string, posterior_std);
INVNET_CLI_FLAG(int64_t, count);
INVNET_CLI_FLAG(std::string, rpc);
INVNET_CLI_FLAG(int64_t, batch);
INVNET_CLI_FLAG(int64_t, concurrency);
INVNET_CLI_FLAG(double, duration);
INVNET_CLI_FLAG(int64_t, requests);
INVNET_CLI_FLAG(double, rate);
INVNET_CLI_FLAG(double, warmup);
INVNET_CLI_FLAG(std::string, name);
INVNET_CLI_FLAG(std::string, losses);
INVNET_CLI_FLAG(int64_t, test_pairs);
INVNET_CLI_FLAG(int64_t, seeds);
INVNET_CLI_FLAG(std::string, output_dir);

namespace {

bool IsCliFlag(absl::string_view name) {
  for (const cli::FlagInfo& flag : cli::AllFlags()) {
    if (name == flag.name) return true;
  }
  return false;
}

bool IsInteger(absl::string_view word) {
  int64_t unused;
  return absl::SimpleAtoi(word, &unused);
}

// argv -> Invocation. Accepts --name=value, --name value, -name..., --switch, --noswitch and
// "--" (everything after it is positional). Unknown flags and bad values are recorded in the
// Invocation (cli::Run reports them with the command's help), and parsing goes on so that the
// command words after them are still known.
void ParseArgs(int argc, char** argv, cli::Invocation* inv) {
  auto fail = [inv](std::string error) {
    if (inv->flag_error.empty()) inv->flag_error = std::move(error);
  };
  for (int i = 1; i < argc; ++i) {
    const absl::string_view arg = argv[i];
    if (arg == "--") {
      for (++i; i < argc; ++i) inv->args.emplace_back(argv[i]);
      break;
    }
    if (arg.size() < 2 || arg[0] != '-') {
      inv->args.emplace_back(arg);
      continue;
    }
    const absl::string_view body = arg.substr(arg[1] == '-' ? 2 : 1);
    if (body == "help" || body == "h" || body == "helpfull") {
      inv->help = true;
      inv->help_full = inv->help_full || body == "helpfull";
      continue;
    }
    const size_t eq = body.find('=');
    std::string name(body.substr(0, eq));
    const bool has_value = eq != absl::string_view::npos;
    std::string value = has_value ? std::string(body.substr(eq + 1)) : "";
    // --version takes the model version (an integer); alone it asks for the program's version.
    if (name == "version" && !has_value && (i + 1 >= argc || !IsInteger(argv[i + 1]))) {
      inv->version_requested = true;
      continue;
    }

    absl::CommandLineFlag* flag = IsCliFlag(name) ? absl::FindCommandLineFlag(name) : nullptr;
    if (flag == nullptr && absl::StartsWith(name, "no") && !has_value &&
        IsCliFlag(name.substr(2))) {
      flag = absl::FindCommandLineFlag(name.substr(2));
      if (flag != nullptr && flag->IsOfType<bool>()) {
        name = name.substr(2);
        value = "false";
      } else {
        fail(absl::StrCat("--", name.substr(2), " is not a switch; give --", name.substr(2),
                          "=VALUE"));
        continue;
      }
    } else if (flag != nullptr && !has_value) {
      if (flag->IsOfType<bool>()) {
        value = "true";
      } else if (i + 1 < argc) {
        value = argv[++i];
      } else {
        fail(absl::StrCat("flag --", name, " needs a value"));
        continue;
      }
    }
    if (flag == nullptr) {
      inv->unknown_flags.push_back(name);
      continue;
    }
    std::string parse_error;
    if (!flag->ParseFrom(value, &parse_error)) {
      fail(absl::StrCat("bad value for --", name, ": ", parse_error));
      continue;
    }
    inv->specified.insert(name);
  }
}

cli::CliFlags CollectFlags() {
  cli::CliFlags f;
  f.server = absl::GetFlag(FLAGS_server);
  f.timeout = absl::GetFlag(FLAGS_timeout);
  f.tls = absl::GetFlag(FLAGS_tls);
  f.tls_ca_file = absl::GetFlag(FLAGS_tls_ca_file);
  f.tls_cert_file = absl::GetFlag(FLAGS_tls_cert_file);
  f.tls_key_file = absl::GetFlag(FLAGS_tls_key_file);
  f.token_file = absl::GetFlag(FLAGS_token_file);
  f.service = absl::GetFlag(FLAGS_service);
  f.preset = absl::GetFlag(FLAGS_preset);
  f.spec = absl::GetFlag(FLAGS_spec);
  f.model = absl::GetFlag(FLAGS_model);
  f.loss = absl::GetFlag(FLAGS_loss);
  f.target_space = absl::GetFlag(FLAGS_target_space);
  f.dataset = absl::GetFlag(FLAGS_dataset);
  f.steps = absl::GetFlag(FLAGS_steps);
  f.batch_size = absl::GetFlag(FLAGS_batch_size);
  f.learning_rate = absl::GetFlag(FLAGS_learning_rate);
  f.seed = absl::GetFlag(FLAGS_seed);
  f.detach = absl::GetFlag(FLAGS_detach);
  f.all_versions = absl::GetFlag(FLAGS_all_versions);
  f.version = absl::GetFlag(FLAGS_version);
  f.input = absl::GetFlag(FLAGS_input);
  f.output = absl::GetFlag(FLAGS_output);
  f.tolerance = absl::GetFlag(FLAGS_tolerance);
  f.max_iterations = absl::GetFlag(FLAGS_max_iterations);
  f.anderson = absl::GetFlag(FLAGS_anderson);
  f.anderson_memory = absl::GetFlag(FLAGS_anderson_memory);
  f.estimators = absl::GetFlag(FLAGS_estimators);
  f.rows_per_chunk = absl::GetFlag(FLAGS_rows_per_chunk);
  f.chunk_rows = absl::GetFlag(FLAGS_chunk_rows);
  f.diagnostics = absl::GetFlag(FLAGS_diagnostics);
  f.posterior_std = absl::GetFlag(FLAGS_posterior_std);
  f.count = absl::GetFlag(FLAGS_count);
  f.rpc = absl::GetFlag(FLAGS_rpc);
  f.batch = absl::GetFlag(FLAGS_batch);
  f.concurrency = absl::GetFlag(FLAGS_concurrency);
  f.duration = absl::GetFlag(FLAGS_duration);
  f.requests = absl::GetFlag(FLAGS_requests);
  f.rate = absl::GetFlag(FLAGS_rate);
  f.warmup = absl::GetFlag(FLAGS_warmup);
  f.name = absl::GetFlag(FLAGS_name);
  f.losses = absl::GetFlag(FLAGS_losses);
  f.test_pairs = absl::GetFlag(FLAGS_test_pairs);
  f.seeds = absl::GetFlag(FLAGS_seeds);
  f.output_dir = absl::GetFlag(FLAGS_output_dir);
  return f;
}

// What to say when Ctrl-C interrupts the command (cli::Context::set_interrupt_message). The
// handler may only read it with write(2): the buffer is swapped under a lock-free pointer, and
// old buffers stay alive in a list (nodes never move) until exit; there are a few per run.
// Called from the main thread only.
std::atomic<const std::string*> interrupt_message{nullptr};

void SetInterruptMessage(const std::string& message) {
  static std::list<std::string> messages;
  if (message.empty()) {
    interrupt_message.store(nullptr);
    return;
  }
  messages.push_back(message);
  interrupt_message.store(&messages.back());
}

extern "C" void OnInterrupt(int) {
  const std::string* message = interrupt_message.load();
  if (message != nullptr) {
    const char prefix[] = "\ninvnet: interrupted: ";
    ssize_t ignored = ::write(STDERR_FILENO, prefix, sizeof(prefix) - 1);
    ignored = ::write(STDERR_FILENO, message->data(), message->size());
    ignored = ::write(STDERR_FILENO, "\n", 1);
    (void)ignored;
  }
  ::_exit(130);  // 128 + SIGINT, as the shell reports a process killed by it
}

bool StderrIsTerminal() {
  const char* term = std::getenv("TERM");
  return ::isatty(STDERR_FILENO) == 1 && (term == nullptr || absl::string_view(term) != "dumb");
}

// The terminal's width in columns, 0 when unknown.
int StderrColumns() {
  struct winsize size {};
  if (::ioctl(STDERR_FILENO, TIOCGWINSZ, &size) == 0 && size.ws_col > 0) return size.ws_col;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  cli::Invocation invocation;
  ParseArgs(argc, argv, &invocation);
  invocation.flags = CollectFlags();
  cli::Context ctx;
  ctx.out = &std::cout;
  ctx.err = &std::cerr;
  ctx.interactive = StderrIsTerminal();
  if (ctx.interactive) ctx.columns = StderrColumns();
  ctx.set_interrupt_message = SetInterruptMessage;
  std::signal(SIGINT, OnInterrupt);
  const int code = cli::Main(invocation, ctx);
  std::cout.flush();
  return code;
}
