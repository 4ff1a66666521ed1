#include "server/rpc_observer.h"

#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <random>

#include <glog/logging.h>
#include <grpcpp/server_context.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/time/time.h"
#include "server/status_util.h"

namespace invnet::server {
namespace {

using grpc::experimental::InterceptionHookPoints;

class RpcObserver final : public grpc::experimental::Interceptor {
 public:
  RpcObserver(ServerMetrics* metrics, Rpc rpc, grpc::ServerContextBase* context)
      : metrics_(metrics), rpc_(rpc), context_(context), start_(std::chrono::steady_clock::now()) {}

  // A call that ended without sending a status (the client vanished first) still counts.
  ~RpcObserver() override {
    if (!finished_) Finish(grpc::Status(grpc::StatusCode::CANCELLED, "the call ended early"));
  }

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_INITIAL_METADATA)) {
      methods->GetSendInitialMetadata()->emplace(kRequestIdMetadata, RequestId());
    }
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_STATUS)) {
      const grpc::Status sent = methods->GetSendStatus();
      const grpc::Status explained = ExplainUnparsableRequest(sent, RpcName(rpc_));
      if (explained.error_code() != sent.error_code()) methods->ModifySendStatus(explained);
      Finish(explained);
    }
    methods->Proceed();
  }

 private:
  // The client's id when usable, else a fresh one; the same for the whole call.
  const std::string& RequestId() {
    if (!request_id_.empty()) return request_id_;
    if (context_ != nullptr) {
      const auto& metadata = context_->client_metadata();
      const auto it = metadata.find(kRequestIdMetadata);
      if (it != metadata.end()) {
        const absl::string_view sent(it->second.data(), it->second.size());
        if (IsUsableRequestId(sent)) request_id_ = std::string(sent);
      }
    }
    if (request_id_.empty()) request_id_ = NewRequestId();
    return request_id_;
  }

  void Finish(const grpc::Status& status) {
    finished_ = true;
    const int code = static_cast<int>(status.error_code());
    metrics_->RecordRpc(rpc_, code, absl::FromChrono(std::chrono::steady_clock::now() - start_));
    if (status.ok()) return;
    // One line per failed call, whatever the message holds.
    const std::string message =
        absl::StrReplaceAll(status.error_message(), {{"\r", " "}, {"\n", " "}});
    const std::string line = absl::StrCat(
        RpcName(rpc_), " request_id=", RequestId(),
        " code=", absl::StatusCodeToString(static_cast<absl::StatusCode>(code)), ": ", message);
    const grpc::StatusCode c = status.error_code();
    if (c == grpc::StatusCode::INTERNAL || c == grpc::StatusCode::UNKNOWN ||
        c == grpc::StatusCode::DATA_LOSS) {
      LOG(ERROR) << line;
    } else {
      LOG(WARNING) << line;
    }
  }

  ServerMetrics* const metrics_;
  const Rpc rpc_;
  grpc::ServerContextBase* const context_;
  const std::chrono::steady_clock::time_point start_;
  std::string request_id_;
  bool finished_ = false;
};

}  // namespace

std::string NewRequestId() {
  thread_local std::mt19937_64 generator(std::random_device{}());
  char id[17];
  std::snprintf(id, sizeof(id), "%016" PRIx64, static_cast<uint64_t>(generator()));
  return id;
}

bool IsUsableRequestId(absl::string_view id) {
  if (id.empty() || id.size() > 128) return false;
  for (char c : id) {
    if (c <= ' ' || c > '~') return false;
  }
  return true;
}

grpc::experimental::Interceptor* RpcObserverFactory::CreateServerInterceptor(
    grpc::experimental::ServerRpcInfo* info) {
  const absl::optional<Rpc> rpc = RpcFromMethod(info->method());
  if (!rpc.has_value()) return nullptr;  // health, reflection
  return new RpcObserver(metrics_, *rpc, info->server_context());
}

}  // namespace invnet::server
