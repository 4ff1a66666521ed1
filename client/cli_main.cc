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

// One absl flag per row of the flag table (client/cli_flags.h), with its default and help.
#define INVNET_CLI_ABSL_FLAG(type, name, default_value, value_name, help) \
  ABSL_FLAG(type, name, cli::CliFlags{}.name, help);
INVNET_CLI_FLAGS(INVNET_CLI_ABSL_FLAG)
#undef INVNET_CLI_ABSL_FLAG

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
#define INVNET_CLI_GET_FLAG(type, name, default_value, value_name, help) \
  f.name = absl::GetFlag(FLAGS_##name);
  INVNET_CLI_FLAGS(INVNET_CLI_GET_FLAG)
#undef INVNET_CLI_GET_FLAG
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
