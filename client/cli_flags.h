#ifndef INVNET_CLIENT_CLI_FLAGS_H_
#define INVNET_CLIENT_CLI_FLAGS_H_

// The CLI's flags, in one table. Each row is X(type, name, default, value name, help); the
// value name is "" for a switch. Everything about a flag is generated from its row: the field
// of CliFlags, its help (FlagInfo, AllFlags), the absl flag cli_main.cc defines and the
// reading of its value. A new flag is one row here plus its command's entry in the command
// table (cli_commands.cc). The order is the order of `invnet --helpfull`.
//
// (An X-macro because absl flags are definitions at namespace scope, one per name: a table of
// values cannot declare them.)

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

// clang-format off
#define INVNET_CLI_FLAGS(X) \
  X(std::string, server, "localhost:50051", "HOST:PORT", \
    "Server address (default localhost:50051).") \
  X(bool, tls, false, "", \
    "Connect with TLS (default: plaintext), verifying the server's certificate.") \
  X(std::string, tls_ca_file, {}, "FILE", \
    "PEM CA certificates to verify the server with (default: the system's). Needs --tls.") \
  X(std::string, tls_cert_file, {}, "FILE", \
    "PEM client certificate, for servers that require mutual TLS. Needs --tls and\n" \
    "--tls_key_file.") \
  X(std::string, tls_key_file, {}, "FILE", \
    "PEM private key of --tls_cert_file.") \
  X(std::string, token_file, {}, "FILE", \
    "File holding a bearer token, sent with every call (default: the file named by\n" \
    "$INVNET_TOKEN_FILE, if set).") \
  X(double, timeout, 0, "SECONDS", \
    "Deadline of each call except watching a job; 0 = none.\n" \
    "Default: 30 s for management calls, 10 min for reconstruct/forward/estimate,\n" \
    "30 min for uploads.") \
  X(std::string, service, {}, "NAME", \
    "Service to check, e.g. invnet.v1.ReconstructionService (default: the server).") \
  X(std::string, preset, {}, "NAME", \
    "Named problem with its default architecture and schedule: bimodal2d, blur64\n" \
    "(experiment: default bimodal2d unless --spec is given).") \
  X(std::string, spec, {}, "FILE", \
    "TrainRequest in protobuf text format; flags override its fields.") \
  X(std::string, model, {}, "NAME", \
    "Model name: [a-z0-9][a-z0-9_-]{0,62}.") \
  X(std::string, loss, {}, "LOSS", \
    "approximation, reconstruction, log-det or divergence (also accepted: logdet,\n" \
    "log_det, LOSS_LOG_DET; any case).") \
  X(std::string, target_space, {}, "SPACE", \
    "measurement (phi ~ A) or normal (phi ~ A^T A); default: the loss's.") \
  X(std::string, dataset, {}, "NAME", \
    "Train on an uploaded dataset's signals (needs a problem from --spec).") \
  X(int64_t, steps, 0, "N", \
    "Optimiser steps (default: the preset's, else 3000).") \
  X(int64_t, batch_size, 0, "N", \
    "Signals per step (default: the preset's, else 512).") \
  X(double, learning_rate, 0, "LR", \
    "Adam learning rate (default: the preset's, else 3e-3).") \
  X(uint64_t, seed, 0, "N", \
    "train: seed of the training data, noise and probes; experiment, pairs: seed of the\n" \
    "held-out test pairs (default 0).") \
  X(bool, detach, false, "", \
    "Print the job id and return at once instead of following the job.") \
  X(int64_t, version, 0, "N", \
    "Model version. reconstruct, forward, estimate, pairs, bench: default the latest;\n" \
    "models show: default every version; models delete: no default (--version=N or\n" \
    "--all_versions). Alone, 'invnet --version' prints the program's version.") \
  X(bool, all_versions, false, "", \
    "models delete: delete every version of the model.") \
  X(std::string, input, {}, "FILE", \
    "Input matrix [batch, dim], .npy or .csv.") \
  X(std::string, output, {}, "FILE", \
    "Output matrix, .npy or .csv (default: CSV on stdout).") \
  X(double, tolerance, 0, "TOL", \
    "Solver tolerance on each block's error bound (default 1e-5).") \
  X(int64_t, max_iterations, 0, "N", \
    "Solver iterations per block and sample (default 1000).") \
  X(bool, anderson, false, "", \
    "Anderson acceleration in the fixed-point solver (default on; --anderson=false\n" \
    "for the plain iteration).") \
  X(int64_t, anderson_memory, 0, "K", \
    "Anderson memory, 1..8 (default 5).") \
  X(std::string, estimators, {}, "LIST", \
    "Comma-separated: posterior_mean, posterior_std, map, wiener, pseudo_inverse\n" \
    "(default: all).") \
  X(int64_t, rows_per_chunk, 0, "N", \
    "Samples per upload message (default: automatic, ~4 MiB).") \
  X(int64_t, chunk_rows, 100000, "N", \
    "Rows per request at most (default 100000); larger inputs go in several requests,\n" \
    "and fewer rows when the server's --max_batch is smaller.") \
  X(std::string, diagnostics, {}, "FILE", \
    "reconstruct: per-sample CSV (row, iterations, converged, error_bound,\n" \
    "forward_residual).") \
  X(std::string, posterior_std, {}, "FILE", \
    "reconstruct: also the posterior standard deviation the network's Jacobian implies,\n" \
    "[batch, n], .npy or .csv (divergence models in normal space, log-det models in\n" \
    "measurement space; NaN rows where it is undefined).") \
  X(int64_t, count, 0, "N", \
    "pairs: test pairs to draw, 1..1000000.") \
  X(std::string, rpc, "reconstruct", "RPC", \
    "bench: reconstruct or forward (default reconstruct).") \
  X(int64_t, batch, 1, "N", \
    "bench: samples per request (default 1).") \
  X(int64_t, concurrency, 1, "N", \
    "bench: requests in flight, one per worker (default 1).") \
  X(double, duration, 10, "SECONDS", \
    "bench: time to send measured requests (default 10, or none with --requests),\n" \
    "after the warm-up; the report divides by the time until the last answer.") \
  X(int64_t, requests, 0, "N", \
    "bench: stop after N measured requests (with --duration: whichever comes first).") \
  X(double, rate, 0, "PER_SECOND", \
    "bench: fixed total arrival rate; latency counts from the scheduled send time\n" \
    "(default 0: closed loop).") \
  X(double, warmup, 1, "SECONDS", \
    "bench: time before measuring starts (default 1).") \
  X(std::string, name, "experiment", "NAME", \
    "experiment: prefix of the model names, NAME-LOSS (default experiment).") \
  X(std::string, losses, "approximation,log-det,divergence,reconstruction", "LIST", \
    "experiment: comma-separated losses to train (default\n" \
    "approximation,log-det,divergence,reconstruction).") \
  X(int64_t, test_pairs, 5000, "N", \
    "experiment: held-out test pairs to evaluate on (default 5000).") \
  X(int64_t, seeds, 1, "K", \
    "experiment: train each loss K times with different training seeds and report mean +-\n" \
    "standard error (default 1, at most 100).") \
  X(std::string, output_dir, {}, "DIR", \
    "experiment: report directory (default ./invnet-report-LABEL, LABEL being --name, else\n" \
    "the spec's model_name, else the preset's or the spec file's name).")
// clang-format on

namespace invnet::client::cli {

// The value of every flag. The defaults here are the defaults of the binary's flags.
struct CliFlags {
#define INVNET_CLI_FLAG_FIELD(type, name, default_value, value_name, help) \
  type name = default_value;
  INVNET_CLI_FLAGS(INVNET_CLI_FLAG_FIELD)
#undef INVNET_CLI_FLAG_FIELD
};

// `invnet experiment --seeds` at most.
constexpr int64_t kMaxExperimentSeeds = 100;

// Documentation of one flag, for help text (and the binary's flag definitions).
struct FlagInfo {
  const char* name;
  const char* value_name;  // "" for a boolean switch
  const char* help;
};
// Every flag, in the table's order.
const std::vector<FlagInfo>& AllFlags();
// The flag called `name`, nullptr when there is none.
const FlagInfo* FindFlag(absl::string_view name);
// The help of flag `name` ("" if there is none).
std::string FlagHelp(absl::string_view name);

}  // namespace invnet::client::cli

#endif  // INVNET_CLIENT_CLI_FLAGS_H_
