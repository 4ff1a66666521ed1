#ifndef INVNET_SERVER_METRICS_H_
#define INVNET_SERVER_METRICS_H_

// The server's Prometheus metrics: counters and histograms recorded on the serving path, and
// gauges computed when they are scraped. gRPC-free: the RPC observer (rpc_observer.h) and the
// handlers record into it; metrics_http.h serves Render() over HTTP.
//
// Recording is lock-free and allocation-free: the RPCs are a fixed enum and the status codes
// the 17 canonical ones, so every series is an atomic in a fixed array, and a histogram is an
// array of atomic bucket counts. Render() reads them with relaxed loads (a scrape may see one
// request counted in a counter but not yet in a histogram; Prometheus tolerates that).
//
//   ServerMetrics metrics;
//   metrics.RecordRpc(Rpc::kReconstruct, /*code=*/0, absl::Milliseconds(3));
//   metrics.AddCollector([&](std::string* out) { AppendGauge(out, "invnet_x", "...", 1); });
//   std::string text = metrics.Render();   // Prometheus text format 0.0.4
//
// Thread safety: all methods may be called concurrently from any thread.

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/optional.h"

namespace invnet::server {

// The RPCs of the four invnet.v1 services (not health or reflection).
enum class Rpc : int {
  kReconstruct,
  kForward,
  kEstimate,
  kDrawTestPairs,
  kTrain,
  kGetTrainingJob,
  kListTrainingJobs,
  kCancelTrainingJob,
  kWatchTrainingJob,
  kListModels,
  kGetModel,
  kDeleteModel,
  kUploadDataset,
  kListDatasets,
  kDeleteDataset,
  kEvaluate,
};
inline constexpr int kNumRpcs = 16;
// The canonical status codes OK (0) .. UNAUTHENTICATED (16), numbered alike in gRPC and Abseil.
inline constexpr int kNumStatusCodes = 17;

// "Reconstruct", ... (the method's name in the proto).
absl::string_view RpcName(Rpc rpc);
// The RPC of a full gRPC method name ("/invnet.v1.ReconstructionService/Reconstruct");
// nullopt for the methods of other services.
absl::optional<Rpc> RpcFromMethod(absl::string_view method);

// A Prometheus histogram with fixed upper bounds (`le`, inclusive) and a +Inf bucket.
class Histogram {
 public:
  // `bounds`: ascending, finite.
  explicit Histogram(std::vector<double> bounds);

  void Observe(double value);
  // Observes every value of values[0..n), with one atomic update per bucket touched.
  void ObserveAll(const int64_t* values, int64_t n);
  int64_t count() const;

  // The _bucket, _sum and _count samples of `name`; `labels` is "" or `key="value",...`.
  void AppendTo(std::string* out, absl::string_view name, absl::string_view labels) const;

 private:
  int Bucket(double value) const;
  void AddToSum(double value);

  const std::vector<double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> counts_;  // per bucket, not cumulative; +Inf last
  std::atomic<double> sum_{0.0};
};

// Bounds for latencies from 50 us to 10 s, and for counts from 1 to 65536 in powers of 2.
std::vector<double> LatencyBounds();
std::vector<double> RowBounds();

class ServerMetrics {
 public:
  // Writes gauges computed at scrape time (models loaded, jobs) into the text, with their HELP
  // and TYPE lines (AppendGauge below).
  using Collector = std::function<void(std::string* out)>;

  ServerMetrics();

  // One finished call: `code` 0..16 (out-of-range codes count as UNKNOWN), `duration` from the
  // start of the call until its status was sent.
  void RecordRpc(Rpc rpc, int code, absl::Duration duration);
  // Rows of a request's batch (Reconstruct and Forward).
  void RecordRequestRows(Rpc rpc, int64_t rows);
  // Where a Reconstruct request's time went: waiting for a solve, and the solve that included
  // it; `merged_rows` > 0 counts that solve (with its rows) in the batch-size histogram: pass it
  // from exactly one of the requests it merged.
  void RecordReconstructTiming(absl::Duration queue, absl::Duration solve, int64_t merged_rows);
  // Fixed-point iterations of each sample of a Reconstruct response.
  void RecordIterations(const int64_t* per_sample, int64_t n);

  void AddCollector(Collector collector);

  // Everything in the Prometheus text exposition format 0.0.4, plus
  // invnet_process_resident_memory_bytes read from /proc/self/statm now.
  std::string Render() const;

  // For tests: calls of `rpc` that ended with `code`.
  int64_t requests(Rpc rpc, int code) const;

 private:
  std::unique_ptr<std::atomic<uint64_t>[]> requests_;  // [kNumRpcs * kNumStatusCodes]
  std::vector<std::unique_ptr<Histogram>> durations_;  // per RPC
  Histogram reconstruct_rows_;
  Histogram forward_rows_;
  Histogram queue_;
  Histogram solve_;
  Histogram merged_rows_;
  Histogram iterations_;
  mutable absl::Mutex mu_;
  std::vector<Collector> collectors_ ABSL_GUARDED_BY(mu_);
};

// Text-format helpers for collectors. `labels` is "" or `key="value",...` with values escaped
// by EscapeLabelValue.
void AppendHeader(std::string* out, absl::string_view name, absl::string_view help,
                  absl::string_view type);
void AppendSample(std::string* out, absl::string_view name, absl::string_view labels, double value);
// HELP, TYPE gauge and one sample without labels.
void AppendGauge(std::string* out, absl::string_view name, absl::string_view help, double value);
// Backslash, double quote and newline escaped, as the text format requires.
std::string EscapeLabelValue(absl::string_view value);

}  // namespace invnet::server

#endif  // INVNET_SERVER_METRICS_H_
