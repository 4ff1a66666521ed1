#include "client/load_generator.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <random>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "invnet/v1/reconstruction_service.grpc.pb.h"

namespace invnet::client {
namespace {

// A request of `batch` pseudo-random measurements of dimension `dim`, in a typical range.
v1::Tensor RandomBatch(int64_t batch, int64_t dim, uint64_t seed) {
  std::mt19937_64 gen(seed);
  std::normal_distribution<float> normal(0.0f, 0.7f);
  v1::Tensor t;
  t.add_shape(batch);
  t.add_shape(dim);
  t.mutable_values()->Reserve(static_cast<int>(batch * dim));
  for (int64_t i = 0; i < batch * dim; ++i) t.add_values(normal(gen));
  return t;
}

struct WorkerResult {
  absl::Time last_answer = absl::InfinitePast();  // of a measured request
  std::vector<double> latencies_us;
  std::map<std::string, int64_t> errors;
};

}  // namespace

double LoadReport::Percentile(double q) const {
  if (latencies_us.empty()) return 0;
  // The nearest-rank definition: the smallest value with at least q of the values at or below.
  const double rank = std::ceil(q * static_cast<double>(latencies_us.size())) - 1;
  const size_t index =
      static_cast<size_t>(std::clamp(rank, 0.0, static_cast<double>(latencies_us.size() - 1)));
  return latencies_us[index];
}

absl::StatusOr<LoadReport> RunLoad(std::shared_ptr<grpc::ChannelInterface> channel, int64_t dim,
                                   const LoadOptions& options) {
  if (channel == nullptr) return absl::InvalidArgumentError("load: no channel");
  if (options.rpc != "reconstruct" && options.rpc != "forward") {
    return absl::InvalidArgumentError(
        absl::StrCat("rpc: '", options.rpc, "' must be reconstruct or forward"));
  }
  if (options.batch < 1 || options.concurrency < 1 || dim < 1) {
    return absl::InvalidArgumentError("batch, concurrency and dim must be >= 1");
  }
  if (options.rate < 0) return absl::InvalidArgumentError("rate: must be >= 0");

  const int workers = options.concurrency;
  const absl::Time warm_until = absl::Now() + options.warmup;
  const absl::Time stop_at = warm_until + options.duration;
  std::atomic<int64_t> measured_budget{options.requests > 0 ? options.requests : INT64_MAX};
  std::vector<WorkerResult> results(workers);
  // Per worker, the interval between scheduled sends at a fixed rate.
  const absl::Duration interval =
      options.rate > 0 ? absl::Seconds(workers / options.rate) : absl::ZeroDuration();

  auto work = [&](int w) {
    auto stub = v1::ReconstructionService::NewStub(channel);
    v1::ReconstructRequest reconstruct;
    v1::ForwardRequest forward;
    v1::Tensor payload = RandomBatch(options.batch, dim, options.seed + w);
    reconstruct.set_model(options.model);
    reconstruct.set_version(options.version);
    *reconstruct.mutable_measurements() = payload;
    if (options.tolerance.has_value()) {
      reconstruct.mutable_solver()->set_tolerance(*options.tolerance);
    }
    forward.set_model(options.model);
    forward.set_version(options.version);
    *forward.mutable_signals() = payload;
    WorkerResult& result = results[w];
    absl::Time next = absl::Now() + interval * (static_cast<double>(w) / workers);
    while (true) {
      absl::Time scheduled = absl::Now();
      if (options.rate > 0) {
        scheduled = next;
        next += interval;
        const absl::Time now = absl::Now();
        if (scheduled > now) absl::SleepFor(scheduled - now);  // pacing the arrival rate
      }
      if (scheduled >= stop_at) break;
      const bool measuring = scheduled >= warm_until;
      if (measuring && measured_budget.fetch_sub(1) <= 0) break;
      grpc::ClientContext context;
      context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
      grpc::Status status;
      if (options.rpc == "reconstruct") {
        v1::ReconstructResponse response;
        status = stub->Reconstruct(&context, reconstruct, &response);
      } else {
        v1::ForwardResponse response;
        status = stub->Forward(&context, forward, &response);
      }
      const absl::Time done = absl::Now();
      if (!measuring) continue;
      result.last_answer = std::max(result.last_answer, done);
      if (status.ok()) {
        result.latencies_us.push_back(absl::ToDoubleMicroseconds(done - scheduled));
      } else {
        ++result.errors[absl::StrCat(status.error_code(), ": ", status.error_message())];
      }
    }
  };

  std::vector<std::thread> threads;
  for (int w = 0; w < workers; ++w) threads.emplace_back(work, w);
  for (std::thread& t : threads) t.join();
  const absl::Time end = absl::Now();

  LoadReport report;
  report.batch = options.batch;
  // The measured time runs from the end of the warm-up to the last measured answer, not to the
  // scheduled end: a server that falls behind a fixed --rate answers after it.
  absl::Time last_answer = absl::InfinitePast();
  for (const WorkerResult& r : results) last_answer = std::max(last_answer, r.last_answer);
  report.seconds = last_answer > warm_until
                       ? absl::ToDoubleSeconds(last_answer - warm_until)
                       : absl::ToDoubleSeconds(std::min(end, stop_at) - warm_until);
  report.seconds = std::max(report.seconds, 0.0);
  for (WorkerResult& r : results) {
    report.latencies_us.insert(report.latencies_us.end(), r.latencies_us.begin(),
                               r.latencies_us.end());
    for (const auto& [code, count] : r.errors) {
      report.errors_by_code[code] += count;
      report.errors += count;
    }
  }
  std::sort(report.latencies_us.begin(), report.latencies_us.end());
  report.requests = static_cast<int64_t>(report.latencies_us.size());
  return report;
}

std::string FormatLoadReport(const LoadReport& r, const LoadOptions& options) {
  std::string out = absl::StrFormat(
      "%s model=%s batch=%d concurrency=%d %s\n", options.rpc, options.model, options.batch,
      options.concurrency,
      options.rate > 0 ? absl::StrFormat("rate=%.0f/s", options.rate) : "closed-loop");
  absl::StrAppendFormat(&out, "  requests   %d ok, %d errors in %.2f s\n", r.requests, r.errors,
                        r.seconds);
  absl::StrAppendFormat(&out, "  throughput %.0f requests/s, %.0f samples/s\n",
                        r.requests_per_second(), r.samples_per_second());
  auto us = [](double v) {
    return v >= 1000 ? absl::StrFormat("%.2f ms", v / 1000) : absl::StrFormat("%.0f us", v);
  };
  absl::StrAppendFormat(&out, "  latency    p50 %s  p90 %s  p99 %s  p99.9 %s  max %s\n",
                        us(r.Percentile(0.5)), us(r.Percentile(0.9)), us(r.Percentile(0.99)),
                        us(r.Percentile(0.999)),
                        us(r.latencies_us.empty() ? 0 : r.latencies_us.back()));
  for (const auto& [code, count] : r.errors_by_code) {
    absl::StrAppendFormat(&out, "  error      %d x %s\n", count, code);
  }
  return out;
}

}  // namespace invnet::client
