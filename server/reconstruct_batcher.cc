#include "server/reconstruct_batcher.h"

#include <exception>
#include <utility>

#include <ATen/ATen.h>

#include "absl/strings/str_cat.h"

namespace invnet::server {
namespace {

// How often a queued request checks whether its client gave up.
constexpr absl::Duration kCancelPollInterval = absl::Milliseconds(2);

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
  if (options.max_queued_requests < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_queued_requests: ", options.max_queued_requests, " must be >= 1"));
  }
  return absl::OkStatus();
}

int64_t ReconstructBatcher::largest_merge() const {
  absl::MutexLock lock(&mu_);
  return largest_merge_;
}

absl::StatusOr<InverseResult> ReconstructBatcher::Solve(const FrozenIResNet& network,
                                                        const at::Tensor& target,
                                                        const InverseOptions& options,
                                                        std::function<bool()> cancelled) {
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
    return std::move(request.result);
  }

  Group& group = groups_[key];
  group.pending.push_back(&request);
  group.pending_rows += rows;
  if (!group.leader_active) {
    group.leader_active = true;
    request.lead = true;
  }
  auto lead_or_done = [](Request* r) { return r->lead || r->done; };
  while (true) {
    mu_.AwaitWithTimeout(absl::Condition(+lead_or_done, &request), kCancelPollInterval);
    if (request.done) break;
    if (request.lead) {
      // The leader is the group's front request, so its own rows are in the batch.
      LeadBatch(key, group, network, options);
      break;
    }
    if (!request.taken && request.cancelled && request.cancelled()) {
      for (auto it = group.pending.begin(); it != group.pending.end(); ++it) {
        if (*it == &request) {
          group.pending.erase(it);
          break;
        }
      }
      group.pending_rows -= rows;
      --in_flight_;
      return absl::CancelledError("reconstruct: the client cancelled or its deadline passed");
    }
  }
  --in_flight_;
  return std::move(request.result);
}

void ReconstructBatcher::LeadBatch(const Key& key, Group& group, const FrozenIResNet& network,
                                   const InverseOptions& options) {
  if (options_.max_delay > absl::ZeroDuration()) {
    struct Enough {
      const Group* group;
      int64_t wanted;
      bool Met() const { return group->pending_rows >= wanted; }
    } enough{&group, options_.max_batch_rows};
    mu_.AwaitWithTimeout(absl::Condition(&enough, &Enough::Met), options_.max_delay);
  }
  std::vector<Request*> batch;
  int64_t rows = 0;
  while (!group.pending.empty()) {
    Request* next = group.pending.front();
    if (!batch.empty() && rows + next->rows > options_.max_batch_rows) break;
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
  if (group.pending.empty()) {
    groups_.erase(key);  // nobody else refers to it: no leader, nothing queued
  } else {
    group.pending.front()->lead = true;
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
  absl::StatusOr<InverseResult> merged = absl::UnknownError("not solved");
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
  int64_t offset = 0;
  for (Request* r : batch) {
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
