#include "client/cli.h"

#include <algorithm>
#include <cstddef>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/cord.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "client/cli_internal.h"
#include "proto/base/status_macros.h"

namespace invnet::client::cli {
namespace {

constexpr char kUsageErrorPayload[] = "invnet.client.cli/usage_error";

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

const char* Version() { return INVNET_VERSION; }

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
