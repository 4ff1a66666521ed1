#include "server/reconstruct_batcher.h"

#include <algorithm>
#include <exception>
#include <thread>
#include <utility>

#include <ATen/ATen.h>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace invnet::server {
namespace {

// How often a queued request checks whether its client gave up (ServerContext::IsCancelled is
// costly, and sixteen waiters polling every 2 ms halved the throughput of 16 clients).
constexpr absl::Duration kCancelPollInterval = absl::Milliseconds(25);
// Merged batches up to this many rows are solved as one chunk (see SolveMerged).
constexpr int64_t kSingleChunkRows = 256;

InverseResult Rows(const InverseResult& all, int64_t offset, int64_t rows) {
  InverseResult part;
  part.x = all.x.narrow(0, offset, rows);
  part.iterations = all.iterations.narrow(0, offset, rows);
  part.converged = all.converged.narrow(0, offset, rows);
  part.error_bound = all.error_bound.narrow(0, offset, rows);
  part.forward_residual = all.forward_residual.narrow(0, offset, rows);
  return part;
}

}  // namespace

absl::Status ValidateBatcherOptions(const BatcherOptions& options) {
  if (options.max_batch_rows < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("batch_max_rows: ", options.max_batch_rows, " must be >= 1"));
  }
  if (options.max_delay < absl::ZeroDuration() || options.max_delay > absl::Seconds(1)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "batch_max_delay: ", absl::FormatDuration(options.max_delay), " must lie in [0, 1s]"));
  }
  if (options.max_concurrent_solves < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "batch_concurrent_solves: ", options.max_concurrent_solves, " must be >= 0"));
  }
  if (options.max_queued_requests < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_queued_requests: ", options.max_queued_requests, " must be >= 1"));
  }
  return absl::OkStatus();
}

ReconstructBatcher::ReconstructBatcher(BatcherOptions options)
    : options_(options),
      max_concurrent_solves_(options.max_concurrent_solves > 0
                                 ? options.max_concurrent_solves
                                 : std::max(1, static_cast<int>(
                                                   std::thread::hardware_concurrency()))) {}

int64_t ReconstructBatcher::largest_merge() const {
  absl::MutexLock lock(&mu_);
  return largest_merge_;
}

absl::StatusOr<InverseResult> ReconstructBatcher::Solve(const FrozenIResNet& network,
                                                        const at::Tensor& target,
                                                        const InverseOptions& options,
                                                        std::function<bool()> cancelled,
                                                        SolveTiming* timing) {
  const absl::Time arrival = absl::Now();
  const int64_t rows = target.size(0);
  Request request;
  request.target = &target;
  request.rows = rows;
  request.cancelled = std::move(cancelled);
  const bool alone = rows >= options_.max_batch_rows;
  const Key key{&network,         static_cast<int>(target.scalar_type()), options.tolerance,
                options.max_iterations, options.anderson,  options.anderson_memory};

  absl::MutexLock lock(&mu_);
  if (in_flight_ >= options_.max_queued_requests) {
    return absl::ResourceExhaustedError(
        absl::StrCat("the server is busy: ", in_flight_,
                     " Reconstruct requests are queued or running (max_queued_requests ",
                     options_.max_queued_requests, "); retry later"));
  }
  ++in_flight_;
  if (alone) {
    mu_.Unlock();
    std::vector<Request*> batch{&request};
    SolveMerged(network, options, batch);
    mu_.Lock();
    --in_flight_;
    Report(request, arrival, /*led=*/true, timing);
    return std::move(request.result);
  }

  Group& group = groups_[key];
  if (group.leaders < max_concurrent_solves_) {
    ++group.leaders;
    request.lead = true;
    request.taken = true;
  } else {
    group.pending.push_back(&request);
    group.pending_rows += rows;
  }
  auto lead_or_done = [](Request* r) { return r->lead || r->done; };
  while (true) {
    mu_.AwaitWithTimeout(absl::Condition(+lead_or_done, &request), kCancelPollInterval);
    if (request.done) break;
    if (request.lead) {
      LeadBatch(key, group, request, network, options);
      break;
    }
    if (!request.taken && request.cancelled && request.cancelled()) {
      group.pending.erase(std::find(group.pending.begin(), group.pending.end(), &request));
      group.pending_rows -= rows;
      --in_flight_;
      return absl::CancelledError("reconstruct: the client cancelled or its deadline passed");
    }
  }
  --in_flight_;
  Report(request, arrival, request.lead, timing);
  return std::move(request.result);
}

void ReconstructBatcher::Report(const Request& request, absl::Time arrival, bool led,
                                SolveTiming* timing) {
  if (timing == nullptr || request.solve_rows == 0) return;
  timing->queue = request.solve_begin - arrival;
  timing->solve = request.solve_end - request.solve_begin;
  timing->solve_rows = request.solve_rows;
  timing->led = led;
}

void ReconstructBatcher::LeadBatch(const Key& key, Group& group, Request& leader,
                                   const FrozenIResNet& network, const InverseOptions& options) {
  if (options_.max_delay > absl::ZeroDuration()) {
    struct Enough {
      const Group* group;
      int64_t wanted;
      bool Met() const { return group->pending_rows >= wanted; }
    } enough{&group, options_.max_batch_rows - leader.rows};
    mu_.AwaitWithTimeout(absl::Condition(&enough, &Enough::Met), options_.max_delay);
  }
  std::vector<Request*> batch{&leader};
  int64_t rows = leader.rows;
  while (!group.pending.empty() && rows + group.pending.front()->rows <= options_.max_batch_rows) {
    Request* next = group.pending.front();
    group.pending.pop_front();
    group.pending_rows -= next->rows;
    next->taken = true;
    rows += next->rows;
    batch.push_back(next);
  }
  largest_merge_ = std::max<int64_t>(largest_merge_, static_cast<int64_t>(batch.size()));

  mu_.Unlock();
  SolveMerged(network, options, batch);
  mu_.Lock();

  for (Request* r : batch) r->done = true;
  if (!group.pending.empty()) {
    // The slot passes on: the oldest queued request leads the next batch.
    Request* next = group.pending.front();
    group.pending.pop_front();
    group.pending_rows -= next->rows;
    next->taken = true;
    next->lead = true;
  } else if (--group.leaders == 0) {
    groups_.erase(key);  // nobody refers to it any more: no leader, nothing queued
  }
}

void ReconstructBatcher::SolveMerged(const FrozenIResNet& network, InverseOptions options,
                                     const std::vector<Request*>& batch) {
  // The merged solve stops early only when nobody wants its rows any more.
  options.should_stop = [&batch] {
    for (const Request* r : batch) {
      if (!r->cancelled || !r->cancelled()) return false;
    }
    return true;
  };
  int64_t rows = 0;
  for (const Request* r : batch) rows += r->rows;
  // A merged batch forms only while every solve slot is busy, i.e. while the other cores are
  // busy, so a parallel region would only add its start-up cost and oversubscribe them: one
  // chunk, solved on this thread.
  if (batch.size() > 1 && rows <= kSingleChunkRows && options.chunk_size == 0) {
    options.chunk_size = rows;
  }
  absl::StatusOr<InverseResult> merged = absl::UnknownError("not solved");
  const absl::Time begin = absl::Now();
  try {
    if (batch.size() == 1) {
      merged = network.Inverse(*batch.front()->target, options);
    } else {
      std::vector<at::Tensor> targets;
      targets.reserve(batch.size());
      for (const Request* r : batch) targets.push_back(*r->target);
      merged = network.Inverse(at::cat(targets, 0), options);
    }
  } catch (const std::exception& e) {
    merged = absl::InternalError(absl::StrCat("reconstruct: ", e.what()));
  }
  if (!merged.ok() && merged.status().code() == absl::StatusCode::kCancelled) {
    merged = absl::CancelledError("reconstruct: the client cancelled or its deadline passed");
  }
  const absl::Time end = absl::Now();
  int64_t offset = 0;
  for (Request* r : batch) {
    r->solve_begin = begin;
    r->solve_end = end;
    r->solve_rows = rows;
    if (!merged.ok()) {
      r->result = merged.status();
    } else if (batch.size() == 1) {
      r->result = std::move(*merged);
    } else {
      r->result = Rows(*merged, offset, r->rows);
    }
    offset += r->rows;
  }
}

}  // namespace invnet::server
