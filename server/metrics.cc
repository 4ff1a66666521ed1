#include "server/metrics.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace invnet::server {
namespace {

constexpr absl::string_view kRpcNames[kNumRpcs] = {
    "Reconstruct",    "Forward",          "Estimate",          "DrawTestPairs",    "Train",
    "GetTrainingJob", "ListTrainingJobs", "CancelTrainingJob", "WatchTrainingJob", "ListModels",
    "GetModel",       "DeleteModel",      "UploadDataset",     "ListDatasets",     "DeleteDataset",
    "Evaluate"};

// Which service each RPC belongs to, for RpcFromMethod.
constexpr absl::string_view kRpcServices[kNumRpcs] = {
    "ReconstructionService", "ReconstructionService", "ReconstructionService",
    "ReconstructionService", "TrainingService",       "TrainingService",
    "TrainingService",       "TrainingService",       "TrainingService",
    "ModelService",          "ModelService",          "ModelService",
    "DatasetService",        "DatasetService",        "DatasetService",
    "ReconstructionService"};

// Integers exactly (counts, bytes), other values with enough digits for sums of seconds.
std::string FormatValue(double value) {
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  if (std::isnan(value)) return "NaN";
  if (value == std::floor(value) && std::fabs(value) < 9.007199254740992e15) {
    return absl::StrCat(static_cast<int64_t>(value));
  }
  char buffer[32];
  std::snprintf(buffer, sizeof(buffer), "%.12g", value);
  return buffer;
}

std::string Labels(absl::string_view labels, absl::string_view extra) {
  if (labels.empty()) return std::string(extra);
  if (extra.empty()) return std::string(labels);
  return absl::StrCat(labels, ",", extra);
}

std::string RpcLabel(int rpc) { return absl::StrCat("rpc=\"", kRpcNames[rpc], "\""); }

double ResidentMemoryBytes() {
  std::ifstream statm("/proc/self/statm");
  int64_t size = 0, resident = 0;
  if (!(statm >> size >> resident)) return 0;
  return static_cast<double>(resident) * static_cast<double>(sysconf(_SC_PAGESIZE));
}

}  // namespace

absl::string_view RpcName(Rpc rpc) { return kRpcNames[static_cast<int>(rpc)]; }

absl::optional<Rpc> RpcFromMethod(absl::string_view method) {
  constexpr absl::string_view kPackage = "/invnet.v1.";
  if (!absl::ConsumePrefix(&method, kPackage)) return absl::nullopt;
  const size_t slash = method.find('/');
  if (slash == absl::string_view::npos) return absl::nullopt;
  const absl::string_view service = method.substr(0, slash);
  const absl::string_view name = method.substr(slash + 1);
  for (int i = 0; i < kNumRpcs; ++i) {
    if (kRpcNames[i] == name && kRpcServices[i] == service) return static_cast<Rpc>(i);
  }
  return absl::nullopt;
}

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)),
      counts_(std::make_unique<std::atomic<uint64_t>[]>(bounds_.size() + 1)) {
  for (size_t i = 0; i <= bounds_.size(); ++i) counts_[i].store(0, std::memory_order_relaxed);
}

int Histogram::Bucket(double value) const {
  return static_cast<int>(std::lower_bound(bounds_.begin(), bounds_.end(), value) -
                          bounds_.begin());
}

void Histogram::AddToSum(double value) {
  // std::atomic<double>::fetch_add is C++20.
  double sum = sum_.load(std::memory_order_relaxed);
  while (!sum_.compare_exchange_weak(sum, sum + value, std::memory_order_relaxed)) {
  }
}

void Histogram::Observe(double value) {
  counts_[Bucket(value)].fetch_add(1, std::memory_order_relaxed);
  AddToSum(value);
}

void Histogram::ObserveAll(const int64_t* values, int64_t n) {
  if (n <= 0) return;
  // Runs of equal buckets (iterations within a batch are similar) cost one update each.
  double sum = 0;
  int run_bucket = Bucket(static_cast<double>(values[0]));
  uint64_t run = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double value = static_cast<double>(values[i]);
    sum += value;
    const int bucket = Bucket(value);
    if (bucket != run_bucket) {
      counts_[run_bucket].fetch_add(run, std::memory_order_relaxed);
      run_bucket = bucket;
      run = 0;
    }
    ++run;
  }
  counts_[run_bucket].fetch_add(run, std::memory_order_relaxed);
  AddToSum(sum);
}

int64_t Histogram::count() const {
  uint64_t total = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) total += counts_[i].load(std::memory_order_relaxed);
  return static_cast<int64_t>(total);
}

void Histogram::AppendTo(std::string* out, absl::string_view name, absl::string_view labels) const {
  // _count is the +Inf bucket by construction, so the two always agree within one scrape.
  uint64_t cumulative = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    cumulative += counts_[i].load(std::memory_order_relaxed);
    const std::string le = i < bounds_.size() ? FormatValue(bounds_[i]) : "+Inf";
    AppendSample(out, absl::StrCat(name, "_bucket"),
                 Labels(labels, absl::StrCat("le=\"", le, "\"")), static_cast<double>(cumulative));
  }
  AppendSample(out, absl::StrCat(name, "_sum"), labels, sum_.load(std::memory_order_relaxed));
  AppendSample(out, absl::StrCat(name, "_count"), labels, static_cast<double>(cumulative));
}

std::vector<double> LatencyBounds() {
  return {50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3,
          50e-3, 100e-3, 250e-3, 500e-3, 1.0,  2.5,    5.0,  10.0};
}

std::vector<double> RowBounds() {
  std::vector<double> bounds;
  for (double rows = 1; rows <= 65536; rows *= 2) bounds.push_back(rows);
  return bounds;
}

ServerMetrics::ServerMetrics()
    : requests_(std::make_unique<std::atomic<uint64_t>[]>(kNumRpcs * kNumStatusCodes)),
      reconstruct_rows_(RowBounds()),
      forward_rows_(RowBounds()),
      queue_(LatencyBounds()),
      solve_(LatencyBounds()),
      merged_rows_(RowBounds()),
      // The solver's default max_iterations is 1000 (models/inverse.h).
      iterations_({1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 75, 100, 200, 500, 1000}) {
  for (int i = 0; i < kNumRpcs * kNumStatusCodes; ++i) {
    requests_[i].store(0, std::memory_order_relaxed);
  }
  for (int i = 0; i < kNumRpcs; ++i)
    durations_.push_back(std::make_unique<Histogram>(LatencyBounds()));
}

void ServerMetrics::RecordRpc(Rpc rpc, int code, absl::Duration duration) {
  if (code < 0 || code >= kNumStatusCodes) code = static_cast<int>(absl::StatusCode::kUnknown);
  const int r = static_cast<int>(rpc);
  requests_[r * kNumStatusCodes + code].fetch_add(1, std::memory_order_relaxed);
  durations_[r]->Observe(absl::ToDoubleSeconds(duration));
}

void ServerMetrics::RecordRequestRows(Rpc rpc, int64_t rows) {
  (rpc == Rpc::kForward ? forward_rows_ : reconstruct_rows_).Observe(static_cast<double>(rows));
}

void ServerMetrics::RecordReconstructTiming(absl::Duration queue, absl::Duration solve,
                                            int64_t merged_rows) {
  queue_.Observe(absl::ToDoubleSeconds(queue));
  solve_.Observe(absl::ToDoubleSeconds(solve));
  if (merged_rows > 0) merged_rows_.Observe(static_cast<double>(merged_rows));
}

void ServerMetrics::RecordIterations(const int64_t* per_sample, int64_t n) {
  iterations_.ObserveAll(per_sample, n);
}

void ServerMetrics::AddCollector(Collector collector) {
  absl::MutexLock lock(&mu_);
  collectors_.push_back(std::move(collector));
}

int64_t ServerMetrics::requests(Rpc rpc, int code) const {
  return static_cast<int64_t>(
      requests_[static_cast<int>(rpc) * kNumStatusCodes + code].load(std::memory_order_relaxed));
}

std::string ServerMetrics::Render() const {
  std::string out;
  out.reserve(64 << 10);
  AppendHeader(&out, "invnet_requests_total",
               "Finished calls of the invnet.v1 RPCs by method and gRPC status code.", "counter");
  for (int r = 0; r < kNumRpcs; ++r) {
    for (int code = 0; code < kNumStatusCodes; ++code) {
      const uint64_t n = requests_[r * kNumStatusCodes + code].load(std::memory_order_relaxed);
      // OK always, so that rate() has a series from the start; error codes once they occur.
      if (n == 0 && code != 0) continue;
      AppendSample(
          &out, "invnet_requests_total",
          absl::StrCat(RpcLabel(r), ",code=\"",
                       absl::StatusCodeToString(static_cast<absl::StatusCode>(code)), "\""),
          static_cast<double>(n));
    }
  }
  AppendHeader(&out, "invnet_rpc_duration_seconds",
               "Time from the start of a call until its status was sent (for WatchTrainingJob "
               "the life of the stream).",
               "histogram");
  for (int r = 0; r < kNumRpcs; ++r) {
    durations_[r]->AppendTo(&out, "invnet_rpc_duration_seconds", RpcLabel(r));
  }
  AppendHeader(&out, "invnet_reconstruct_queue_seconds",
               "Time a Reconstruct request waited in the batcher before the solve that included "
               "its rows began.",
               "histogram");
  queue_.AppendTo(&out, "invnet_reconstruct_queue_seconds", "");
  AppendHeader(&out, "invnet_reconstruct_solve_seconds",
               "Duration of the inverse solve that included a Reconstruct request's rows.",
               "histogram");
  solve_.AppendTo(&out, "invnet_reconstruct_solve_seconds", "");
  AppendHeader(&out, "invnet_request_rows", "Rows (samples) per Reconstruct or Forward request.",
               "histogram");
  reconstruct_rows_.AppendTo(&out, "invnet_request_rows", "rpc=\"Reconstruct\"");
  forward_rows_.AppendTo(&out, "invnet_request_rows", "rpc=\"Forward\"");
  AppendHeader(&out, "invnet_reconstruct_batch_rows",
               "Rows per inverse solve, after merging concurrent Reconstruct requests.",
               "histogram");
  merged_rows_.AppendTo(&out, "invnet_reconstruct_batch_rows", "");
  AppendHeader(&out, "invnet_reconstruct_iterations",
               "Fixed-point iterations per reconstructed sample (all blocks together).",
               "histogram");
  iterations_.AppendTo(&out, "invnet_reconstruct_iterations", "");
  AppendGauge(&out, "invnet_process_resident_memory_bytes",
              "Resident set size of the server process.", ResidentMemoryBytes());
  absl::MutexLock lock(&mu_);
  for (const Collector& collector : collectors_) collector(&out);
  return out;
}

void AppendHeader(std::string* out, absl::string_view name, absl::string_view help,
                  absl::string_view type) {
  absl::StrAppend(out, "# HELP ", name, " ", help, "\n# TYPE ", name, " ", type, "\n");
}

void AppendSample(std::string* out, absl::string_view name, absl::string_view labels,
                  double value) {
  if (labels.empty()) {
    absl::StrAppend(out, name, " ", FormatValue(value), "\n");
  } else {
    absl::StrAppend(out, name, "{", labels, "} ", FormatValue(value), "\n");
  }
}

void AppendGauge(std::string* out, absl::string_view name, absl::string_view help, double value) {
  AppendHeader(out, name, help, "gauge");
  AppendSample(out, name, "", value);
}

std::string EscapeLabelValue(absl::string_view value) {
  std::string escaped;
  escaped.reserve(value.size());
  for (char c : value) {
    if (c == '\\') {
      escaped += "\\\\";
    } else if (c == '"') {
      escaped += "\\\"";
    } else if (c == '\n') {
      escaped += "\\n";
    } else {
      escaped += c;
    }
  }
  return escaped;
}

}  // namespace invnet::server
