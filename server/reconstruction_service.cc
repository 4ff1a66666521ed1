#include "server/reconstruction_service.h"

#include <atomic>
#include <chrono>
#include <memory>

#include "server/status_util.h"

namespace invnet::server {
namespace {

// The stop predicate a long computation polls (from any thread): the client cancelled, or its
// deadline passed. The deadline is compared here, not left to gRPC's cancellation. Asking
// ServerContext::IsCancelled plucks from a completion queue, so it is asked at most every
// kCancelPollInterval; the clock alone is read at every poll (tens of nanoseconds).
constexpr auto kCancelPollInterval = std::chrono::milliseconds(2);

std::function<bool()> StopWhenAbandoned(grpc::ServerContext* context) {
  using Clock = std::chrono::steady_clock;
  struct State {
    std::chrono::system_clock::time_point deadline;
    std::atomic<Clock::rep> next_ask{0};
    std::atomic<bool> stopped{false};
  };
  auto state = std::make_shared<State>();
  state->deadline = context->deadline();
  return [context, state] {
    if (state->stopped.load(std::memory_order_relaxed)) return true;
    if (std::chrono::system_clock::now() >= state->deadline) {
      state->stopped = true;
      return true;
    }
    const Clock::rep now = Clock::now().time_since_epoch().count();
    Clock::rep next = state->next_ask.load(std::memory_order_relaxed);
    if (now < next || !state->next_ask.compare_exchange_strong(
                          next, now + Clock::duration(kCancelPollInterval).count())) {
      return false;  // asked recently, or another thread is asking now
    }
    if (context->IsCancelled()) state->stopped = true;
    return state->stopped.load();
  };
}

// The core says CANCELLED when `stop` fired; when that was the deadline, the caller's own
// gRPC would say DEADLINE_EXCEEDED, and the server's answer can arrive first: say the same.
absl::Status ForTheCaller(absl::Status status, const grpc::ServerContext& context) {
  if (status.code() == absl::StatusCode::kCancelled &&
      std::chrono::system_clock::now() >= context.deadline()) {
    return absl::DeadlineExceededError(status.message());
  }
  return status;
}

}  // namespace

grpc::Status ReconstructionServiceImpl::Reconstruct(grpc::ServerContext* context,
                                                    const v1::ReconstructRequest* request,
                                                    v1::ReconstructResponse* response) {
  if (absl::Status s = auth_->Check(*context, "/invnet.v1.ReconstructionService/Reconstruct");
      !s.ok()) {
    return ToGrpcStatus(s);
  }
  // Logged with its request id by rpc_observer.h.
  return ToGrpcStatus(
      ForTheCaller(core_.Reconstruct(*request, StopWhenAbandoned(context), response), *context));
}

grpc::Status ReconstructionServiceImpl::Forward(grpc::ServerContext* context,
                                                const v1::ForwardRequest* request,
                                                v1::ForwardResponse* response) {
  if (absl::Status s = auth_->Check(*context, "/invnet.v1.ReconstructionService/Forward");
      !s.ok()) {
    return ToGrpcStatus(s);
  }
  // Logged with its request id by rpc_observer.h.
  return ToGrpcStatus(
      ForTheCaller(core_.Forward(*request, StopWhenAbandoned(context), response), *context));
}

grpc::Status ReconstructionServiceImpl::Estimate(grpc::ServerContext* context,
                                                 const v1::EstimateRequest* request,
                                                 v1::EstimateResponse* response) {
  if (absl::Status s = auth_->Check(*context, "/invnet.v1.ReconstructionService/Estimate");
      !s.ok()) {
    return ToGrpcStatus(s);
  }
  // Logged with its request id by rpc_observer.h.
  return ToGrpcStatus(
      ForTheCaller(core_.Estimate(*request, StopWhenAbandoned(context), response), *context));
}

grpc::Status ReconstructionServiceImpl::DrawTestPairs(grpc::ServerContext* context,
                                                      const v1::DrawTestPairsRequest* request,
                                                      v1::DrawTestPairsResponse* response) {
  if (absl::Status s = auth_->Check(*context, "/invnet.v1.ReconstructionService/DrawTestPairs");
      !s.ok()) {
    return ToGrpcStatus(s);
  }
  // Logged with its request id by rpc_observer.h.
  return ToGrpcStatus(
      ForTheCaller(core_.DrawTestPairs(*request, StopWhenAbandoned(context), response), *context));
}

grpc::Status ReconstructionServiceImpl::Evaluate(grpc::ServerContext* context,
                                                 const v1::EvaluateRequest* request,
                                                 v1::EvaluateResponse* response) {
  if (absl::Status s = auth_->Check(*context, "/invnet.v1.ReconstructionService/Evaluate");
      !s.ok()) {
    return ToGrpcStatus(s);
  }
  // Logged with its request id by rpc_observer.h.
  return ToGrpcStatus(
      ForTheCaller(core_.Evaluate(*request, StopWhenAbandoned(context), response), *context));
}

}  // namespace invnet::server
