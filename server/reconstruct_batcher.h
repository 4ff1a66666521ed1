#ifndef INVNET_SERVER_RECONSTRUCT_BATCHER_H_
#define INVNET_SERVER_RECONSTRUCT_BATCHER_H_

// Dynamic batching of Reconstruct requests: concurrent requests for the same network, dtype
// and solver options are merged into one inverse solve, and the results are split back.
//
// There is no batching thread. Up to max_concurrent_solves requests per group solve at once,
// each as its own leader, so a lone client pays nothing (its request leads at once) and idle
// cores are never left waiting for company. A request that finds every solve slot taken queues;
// when a leader finishes it passes its slot to the oldest queued request, which takes the
// queued requests of its group (up to max_batch_rows rows) and solves them as one batch. So
// requests are merged exactly when they would otherwise have waited for a core. With
// max_delay > 0 a leader also waits up to that long for a full batch.
//
// Merging changes no result beyond float rounding: every sample stops on its own (per-sample
// stopping and per-sample Anderson state, models/inverse.h).
//
// The queue is bounded: a request that finds max_queued_requests requests queued or being
// solved is refused at once with RESOURCE_EXHAUSTED instead of waiting behind them.
//
// Cancellation: a queued request whose client gives up leaves the queue and returns CANCELLED;
// a merged solve stops early only when every request in it was cancelled (the others still
// want their rows), and the cancelled ones return CANCELLED when it ends.
//
// Thread safety: all methods may be called from any thread.

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <tuple>
#include <vector>

#include <ATen/core/Tensor.h>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "models/inverse.h"

namespace invnet::server {

struct BatcherOptions {
  // Largest merged batch, in rows; a request at least this large is solved on its own.
  // 1 turns batching off.
  int64_t max_batch_rows = 1024;
  // How long a leader waits for more requests before it solves (0: it never waits).
  absl::Duration max_delay = absl::ZeroDuration();
  // Requests queued or being solved, across all models, beyond which new ones are refused.
  int64_t max_queued_requests = 1024;
  // Batches of one group solved at the same time (0: the machine's hardware threads).
  int max_concurrent_solves = 0;
};

// OK, or INVALID_ARGUMENT naming the bad option.
absl::Status ValidateBatcherOptions(const BatcherOptions& options);

// Where one Solve call's time went (for metrics); filled when its rows were solved.
struct SolveTiming {
  // From the call until the solve that included its rows began (waiting for a solve slot, and
  // for company under max_delay).
  absl::Duration queue;
  // That solve, merged with other requests' rows or not.
  absl::Duration solve;
  // Rows of that solve (this request's and the others').
  int64_t solve_rows = 0;
  // Exactly one caller per solve (its leader) has this set, so counting them counts solves.
  bool led = false;
};

class ReconstructBatcher {
 public:
  explicit ReconstructBatcher(BatcherOptions options);

  // network->Inverse(target, options) for target [rows, dim], possibly solved together with
  // other callers' rows. options.should_stop is ignored; `cancelled` (polled, thread-safe)
  // says that this caller's client gave up. The network must stay alive during the call
  // (callers hold its shared_ptr). Codes: Inverse's, CANCELLED, RESOURCE_EXHAUSTED (queue
  // full). `timing` (optional) is filled when the rows were solved, whatever the result.
  absl::StatusOr<InverseResult> Solve(const FrozenIResNet& network, const at::Tensor& target,
                                      const InverseOptions& options,
                                      std::function<bool()> cancelled,
                                      SolveTiming* timing = nullptr);

  // Largest merged batch solved so far, in requests (for tests and diagnostics).
  int64_t largest_merge() const;

 private:
  // One caller's request; it lives on the caller's stack until `done`.
  struct Request {
    const at::Tensor* target = nullptr;  // [rows, dim]
    int64_t rows = 0;
    std::function<bool()> cancelled;
    bool lead = false;   // this caller leads a batch: it holds one of the group's solve slots
    bool taken = false;  // it leads or a leader took it into a batch: it can no longer leave
    bool done = false;   // `result` is final
    absl::StatusOr<InverseResult> result = absl::UnknownError("not solved");
    // Set by whoever solves it, with `result`.
    absl::Time solve_begin;
    absl::Time solve_end;
    int64_t solve_rows = 0;
  };
  // Requests merge only when everything that shapes their solve is equal.
  using Key = std::tuple<const FrozenIResNet*, int /*dtype*/, double /*tolerance*/,
                         int64_t /*max_iterations*/, bool /*anderson*/, int64_t /*memory*/>;
  struct Group {
    std::deque<Request*> pending;  // queued, not yet taken
    int64_t pending_rows = 0;
    int leaders = 0;  // batches being solved (or about to be); pending is empty unless all
                      // slots are taken
  };

  // Leads one batch of `group` (mu_ held on entry and exit): waits up to max_delay for rows,
  // takes `leader` and the queued requests that fit, solves them unlocked, completes them, and
  // passes the solve slot to the oldest queued request.
  void LeadBatch(const Key& key, Group& group, Request& leader, const FrozenIResNet& network,
                 const InverseOptions& options) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Solves the requests as one batch and sets each one's result (no lock needed: until they
  // are marked done, only the leader touches taken requests).
  static void SolveMerged(const FrozenIResNet& network, InverseOptions options,
                          const std::vector<Request*>& batch);
  // Fills `timing` (if any) from a solved request that arrived at `arrival`.
  static void Report(const Request& request, absl::Time arrival, bool led, SolveTiming* timing);

  const BatcherOptions options_;
  const int max_concurrent_solves_;
  mutable absl::Mutex mu_;
  std::map<Key, Group> groups_ ABSL_GUARDED_BY(mu_);
  int64_t in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t largest_merge_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace invnet::server

#endif  // INVNET_SERVER_RECONSTRUCT_BATCHER_H_
