#ifndef INVNET_CLIENT_LOAD_GENERATOR_H_
#define INVNET_CLIENT_LOAD_GENERATOR_H_

// A load generator for a running invnet server, in the manner of ghz or perf_analyzer: N workers
// send Reconstruct (or Forward) requests of a fixed batch size, either closed loop (each worker
// sends its next request when the previous one returns) or at a fixed total arrival rate (latency
// then counts from the scheduled send time, so a slow server cannot hide its queueing: no
// coordinated omission). Reports request and sample throughput and latency percentiles.

#include <grpcpp/channel.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace invnet::client {

struct LoadOptions {
  std::string rpc = "reconstruct";  // "reconstruct" or "forward"
  std::string model;
  int64_t version = 0;
  int64_t batch = 1;    // samples per request
  int concurrency = 1;  // workers (requests in flight, closed loop)
  // Requests are sent until `duration` after the warm-up (absl::InfiniteDuration(): no limit)
  // or until `requests` measured ones were sent (if > 0), whichever comes first.
  absl::Duration duration = absl::Seconds(10);
  int64_t requests = 0;
  double rate = 0;                           // requests per second in total; 0 = closed loop
  absl::Duration warmup = absl::Seconds(1);  // requests before measuring starts
  std::optional<double> tolerance;           // solver tolerance for reconstruct
  uint64_t seed = 1;
};

struct LoadReport {
  int64_t requests = 0;  // measured, successful
  int64_t errors = 0;
  std::map<std::string, int64_t> errors_by_code;
  // Measured wall time: from the end of the warm-up to the last measured answer.
  double seconds = 0;
  int64_t batch = 0;
  std::vector<double> latencies_us;  // sorted ascending

  double requests_per_second() const { return seconds > 0 ? requests / seconds : 0; }
  double samples_per_second() const { return requests_per_second() * batch; }
  // Latency at quantile q in [0, 1], microseconds (0 when nothing was measured).
  double Percentile(double q) const;
};

// The workers share `channel`. `dim` is the model's input dimension (m for reconstruct, n for
// forward). INVALID_ARGUMENT for bad options.
absl::StatusOr<LoadReport> RunLoad(std::shared_ptr<grpc::ChannelInterface> channel, int64_t dim,
                                   const LoadOptions& options);

// A few lines: requests, errors, throughput, latency p50/p90/p99/p99.9 and max.
std::string FormatLoadReport(const LoadReport& report, const LoadOptions& options);

}  // namespace invnet::client

#endif  // INVNET_CLIENT_LOAD_GENERATOR_H_
