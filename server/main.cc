// invnet-server: serves and trains invertible residual networks over gRPC.
//
//   invnet-server --repository=/var/lib/invnet                 # 127.0.0.1:50051
//   invnet-server --address=0.0.0.0:50051 --auth_tokens_file=...  # reachable from elsewhere
//
// A non-loopback --address without --auth_tokens_file is refused unless
// --allow_unauthenticated is given. --help lists the flags, --version prints the version.
// Exit status: 0 after a clean shutdown (or --help, --version); 2 for a usage error (a bad flag
// value, named in the message); 1 when the server cannot start (address in use, repository).
//
// Prints "invnet-server listening on <address>:<port>" once it serves (port 0 picks a free
// port). SIGTERM or SIGINT shut it down gracefully: health NOT_SERVING, running training jobs
// cancelled (their records say so), in-flight calls drained, exit 0.
//
// --metrics_address=HOST:PORT serves Prometheus metrics at http://HOST:PORT/metrics and prints
// "invnet-server metrics on HOST:PORT" before the listening line (which announces readiness).
//
// --tls_cert_file and --tls_key_file serve TLS (--tls_client_ca_file: mutual TLS) and
// --auth_tokens_file requires bearer tokens (server/auth.h); tokens never go on the command
// line, where `ps` shows them to every user.

#include <signal.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <string>
#include <utility>
#include <vector>

#include <glog/logging.h>

#include "absl/flags/commandlineflag.h"
#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/reflection.h"
#include "absl/flags/usage.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "models/blas_setup.h"
#include "server/repository_check.h"
#include "server/server.h"

ABSL_FLAG(std::string, address, invnet::server::ServerOptions{}.address,
          "host:port to listen on (port 0: any free port); a non-loopback address needs "
          "--auth_tokens_file or --allow_unauthenticated");
ABSL_FLAG(bool, allow_unauthenticated, false,
          "allow a non-loopback --address without --auth_tokens_file (anyone who can reach the "
          "port can train, upload and delete; logs a warning)");
ABSL_FLAG(std::string, repository, "./invnet-repository",
          "model repository directory (models, datasets, job records)");
ABSL_FLAG(int64_t, max_message_mb, 256, "largest request or response, in MiB");
ABSL_FLAG(int, torch_threads, 0, "LibTorch threads per request and per job (0: all cores)");
ABSL_FLAG(int, max_jobs, 2, "training jobs that may run at once");
ABSL_FLAG(int, max_queued_jobs, invnet::server::ServerOptions{}.max_queued_jobs,
          "training jobs that may wait for a free slot (QUEUED); more get RESOURCE_EXHAUSTED");
ABSL_FLAG(int, max_watch_streams, invnet::server::ServerOptions{}.max_watch_streams,
          "WatchTrainingJob streams open at once; more get RESOURCE_EXHAUSTED");
ABSL_FLAG(int, max_watch_streams_per_connection,
          invnet::server::ServerOptions{}.max_watch_streams_per_connection,
          "WatchTrainingJob streams open at once from one client connection");
ABSL_FLAG(int64_t, max_dataset_mb, 1024, "largest uploaded dataset, in MiB");
ABSL_FLAG(int64_t, max_job_memory_mb, 0,
          "memory one training job may need (estimated before it starts), in MiB (0: half of "
          "the machine's physical memory)");
ABSL_FLAG(int64_t, max_models, 1000, "model versions the repository serves at most");
ABSL_FLAG(int64_t, max_batch, 1000000, "rows of one Reconstruct/Forward/Estimate batch at most");
ABSL_FLAG(bool, reflection, true, "enable gRPC server reflection");
ABSL_FLAG(int64_t, batch_max_rows, 1024,
          "merge concurrent Reconstruct requests for one model into batches of up to this many "
          "rows (1: no merging)");
ABSL_FLAG(int64_t, batch_max_delay_us, 0,
          "how long a Reconstruct request may wait for others to merge with (0: never waits)");
ABSL_FLAG(int, batch_concurrent_solves, 0,
          "Reconstruct solves per model at once; requests beyond them queue and are merged "
          "(0: the number of cores)");
ABSL_FLAG(int64_t, max_queued_requests, 1024,
          "Reconstruct requests queued or running beyond which new ones get RESOURCE_EXHAUSTED");
ABSL_FLAG(bool, check_repository, false,
          "check --repository offline (every checkpoint verified and re-certified, every dataset "
          "and job record read; nothing changed), print a report and exit: 0 healthy, 2 damaged");
ABSL_FLAG(int, shutdown_grace_seconds, 10, "time in-flight calls get to finish on shutdown");
ABSL_FLAG(std::string, tls_cert_file, "",
          "PEM certificate chain of the server; with --tls_key_file serves TLS (default: "
          "plaintext, for local use)");
ABSL_FLAG(std::string, tls_key_file, "", "PEM private key of --tls_cert_file");
ABSL_FLAG(std::string, tls_client_ca_file, "",
          "PEM CA certificates: require client certificates signed by them (mutual TLS)");
ABSL_FLAG(std::string, metrics_address, "",
          "host:port of the Prometheus exporter (GET /metrics, plain HTTP; port 0: any free "
          "port; default: none)");
ABSL_FLAG(std::string, auth_tokens_file, "",
          "bearer tokens, one '<scope> <token>' per line, scope infer or admin (default: no "
          "tokens, every call allowed)");

namespace {

constexpr char kUsage[] =
    "serves and trains invertible residual networks over gRPC (see README.md)\n\n"
    "  invnet-server --repository=DIR [--address=127.0.0.1:50051] [--flag=value ...]";

// Prints the flags whose definition file ends with `file` ("" = all) and whose name or help
// contains `match` ("" = all), sorted by file, then name.
void PrintFlags(absl::string_view file, absl::string_view match) {
  std::vector<const absl::CommandLineFlag*> flags;
  for (const auto& [name, flag] : absl::GetAllFlags()) {
    if (!absl::EndsWith(flag->Filename(), file)) continue;
    if (!absl::StrContains(name, match) && !absl::StrContains(flag->Help(), match)) continue;
    flags.push_back(flag);
  }
  std::sort(flags.begin(), flags.end(), [](const auto* a, const auto* b) {
    return std::make_pair(a->Filename(), a->Name()) < std::make_pair(b->Filename(), b->Name());
  });
  for (const absl::CommandLineFlag* flag : flags) {
    std::cout << "  --" << flag->Name() << " (default: \"" << flag->DefaultValue() << "\")\n"
              << "      " << flag->Help() << "\n";
  }
}

// --help, --helpshort, --help=SUBSTRING, --helpfull and --version, answered with exit status 0
// (absl's own exit 1, and its --help lists nothing here: it looks for flags in a file named
// like the program). Returns the exit status, or -1 when argv asks for none of them.
int HandleHelpAndVersion(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    if (arg == "--") break;
    if (!absl::ConsumePrefix(&arg, "--")) absl::ConsumePrefix(&arg, "-");
    if (arg == "version") {
      std::cout << "invnet-server " << INVNET_VERSION << std::endl;
      return 0;
    }
    const bool full = arg == "helpfull";
    const bool match = absl::ConsumePrefix(&arg, "help=");
    if (!full && !match && arg != "help" && arg != "helpshort") continue;
    std::cout << "invnet-server: " << kUsage << "\n\nFlags:\n";
    PrintFlags(full || match ? "" : "server/main.cc", match ? arg : "");
    if (!full) std::cout << "\n--helpfull also lists the flags of the libraries.\n";
    std::cout.flush();
    return 0;
  }
  return -1;
}

// An unknown flag, or a value its flag cannot parse ("--max_jobs=two"), as a usage error
// (exit 2, naming the flag) before absl::ParseCommandLine, which would exit 1 for both.
// Returns the exit status, or -1 when every flag parses.
int CheckFlagsParse(int argc, char** argv) {
  auto usage_error = [](const std::string& message) {
    std::cerr << "invnet-server: " << message << " (invnet-server --help lists the flags)"
              << std::endl;
    return 2;
  };
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    if (arg == "--") break;
    if (!absl::ConsumePrefix(&arg, "--") && !absl::ConsumePrefix(&arg, "-")) continue;
    const size_t equals = arg.find('=');
    const absl::string_view name = arg.substr(0, equals);
    absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
    bool negated = false;
    if (flag == nullptr && absl::StartsWith(name, "no")) {  // --noflag of a bool flag
      flag = absl::FindCommandLineFlag(name.substr(2));
      negated = flag != nullptr && flag->IsOfType<bool>() && equals == absl::string_view::npos;
      if (!negated) flag = nullptr;
    }
    if (flag == nullptr) return usage_error(absl::StrCat("unknown flag '--", name, "'"));
    if (negated) continue;
    std::string value;
    if (equals != absl::string_view::npos) {
      value = std::string(arg.substr(equals + 1));
    } else if (flag->IsOfType<bool>()) {
      value = "true";
    } else if (i + 1 < argc) {
      value = argv[++i];  // "--address HOST:PORT"
    } else {
      return usage_error(absl::StrCat("--", name, ": needs a value"));
    }
    std::string error;
    if (!flag->ParseFrom(value, &error)) {
      return usage_error(absl::StrCat("--", name, ": ", error));
    }
  }
  return -1;
}

// MiB to bytes, saturating: an absurd value stays absurd (and is refused) instead of wrapping.
int64_t MebibytesToBytes(int64_t mib) {
  constexpr int64_t kMax = int64_t{1} << 40;
  return std::clamp(mib, -kMax, kMax) * (int64_t{1} << 20);
}

}  // namespace

int main(int argc, char** argv) {
  if (const int status = HandleHelpAndVersion(argc, argv); status >= 0) return status;
  // First: may re-execute the program with a better OpenBLAS kernel (models/blas_setup.h).
  const std::string blas = invnet::EnsureOptimizedBlas(argv);
  absl::SetProgramUsageMessage(kUsage);
  if (const int status = CheckFlagsParse(argc, argv); status >= 0) return status;
  absl::ParseCommandLine(argc, argv);
  FLAGS_logtostderr = true;
  google::InitGoogleLogging(argv[0]);
  LOG(INFO) << blas;

  if (absl::GetFlag(FLAGS_check_repository)) {
    const std::string root = absl::GetFlag(FLAGS_repository);
    absl::StatusOr<invnet::server::RepositoryReport> report =
        invnet::server::CheckRepository(root);
    if (!report.ok()) {
      std::cerr << "invnet-server: " << report.status() << std::endl;
      return 1;
    }
    std::cout << invnet::server::FormatRepositoryReport(root, *report);
    return report->healthy() ? 0 : 2;
  }

  // Block the shutdown signals before any thread starts, so every thread inherits the mask and
  // only the sigwait below receives them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  invnet::server::ServerOptions options;
  options.address = absl::GetFlag(FLAGS_address);
  options.allow_unauthenticated = absl::GetFlag(FLAGS_allow_unauthenticated);
  options.repository = absl::GetFlag(FLAGS_repository);
  options.max_message_bytes = MebibytesToBytes(absl::GetFlag(FLAGS_max_message_mb));
  options.torch_threads = absl::GetFlag(FLAGS_torch_threads);
  options.max_concurrent_jobs = absl::GetFlag(FLAGS_max_jobs);
  options.max_queued_jobs = absl::GetFlag(FLAGS_max_queued_jobs);
  options.max_watch_streams = absl::GetFlag(FLAGS_max_watch_streams);
  options.max_watch_streams_per_connection =
      absl::GetFlag(FLAGS_max_watch_streams_per_connection);
  options.max_dataset_bytes = MebibytesToBytes(absl::GetFlag(FLAGS_max_dataset_mb));
  options.max_job_memory_bytes = MebibytesToBytes(absl::GetFlag(FLAGS_max_job_memory_mb));
  options.reflection = absl::GetFlag(FLAGS_reflection);
  options.max_model_versions = absl::GetFlag(FLAGS_max_models);
  options.max_batch = absl::GetFlag(FLAGS_max_batch);
  options.batching.max_batch_rows = absl::GetFlag(FLAGS_batch_max_rows);
  options.batching.max_delay = absl::Microseconds(absl::GetFlag(FLAGS_batch_max_delay_us));
  options.batching.max_concurrent_solves = absl::GetFlag(FLAGS_batch_concurrent_solves);
  options.batching.max_queued_requests = absl::GetFlag(FLAGS_max_queued_requests);
  options.shutdown_grace = absl::Seconds(absl::GetFlag(FLAGS_shutdown_grace_seconds));
  options.tls_cert_file = absl::GetFlag(FLAGS_tls_cert_file);
  options.tls_key_file = absl::GetFlag(FLAGS_tls_key_file);
  options.tls_client_ca_file = absl::GetFlag(FLAGS_tls_client_ca_file);
  options.auth_tokens_file = absl::GetFlag(FLAGS_auth_tokens_file);
  options.metrics_address = absl::GetFlag(FLAGS_metrics_address);

  auto server = invnet::server::Server::Start(options);
  if (!server.ok()) {
    const bool usage = absl::IsInvalidArgument(server.status());
    std::cerr << "invnet-server: " << server.status().message()
              << (usage ? " (invnet-server --help lists the flags)" : "") << std::endl;
    return usage ? 2 : 1;
  }
  if (!options.auth_tokens_file.empty() && options.tls_cert_file.empty()) {
    LOG(WARNING) << "bearer tokens without TLS: anyone who can watch the network can read them";
  }
  for (const std::string& problem : (*server)->load_problems()) {
    LOG(WARNING) << "repository entry skipped: " << problem;
  }
  if ((*server)->metrics_port() != 0) {
    const std::string& metrics = options.metrics_address;
    std::cout << "invnet-server metrics on " << metrics.substr(0, metrics.rfind(':')) << ":"
              << (*server)->metrics_port() << std::endl;
  }
  const std::string host = options.address.substr(0, options.address.rfind(':'));
  std::cout << "invnet-server listening on " << host << ":" << (*server)->port() << std::endl;

  int received = 0;
  sigwait(&signals, &received);
  LOG(INFO) << "received " << (received == SIGTERM ? "SIGTERM" : "SIGINT")
            << ", shutting down";
  (*server)->Shutdown();
  LOG(INFO) << "shut down cleanly";
  return 0;
}
