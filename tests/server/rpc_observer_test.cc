// The call observer on a bare gRPC server (no invnet server around it): a ModelService whose
// answers the test chooses, called in process.

#include "server/rpc_observer.h"

#include <glog/logging.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "invnet/v1/model_service.grpc.pb.h"
#include "server/metrics.h"
#include "tests/testing/http_client.h"
#include "tests/testing/log_sink.h"

namespace invnet::server {
namespace {

using ::invnet::testing::CapturingSink;
using ::invnet::testing::ParseSamples;
using ::testing::HasSubstr;
using ::testing::MatchesRegex;

TEST(RequestIdTest, UsableIdsArePrintableAsciiWithoutSpacesUpTo128Characters) {
  for (const std::string& id :
       {std::string("a"), std::string("client-id-42"), std::string("!~{}[]/:=+"),
        std::string("550e8400-e29b-41d4-a716-446655440000"), std::string(128, 'x')}) {
    EXPECT_TRUE(IsUsableRequestId(id)) << id;
  }
  for (const std::string& id :
       {std::string(""), std::string(129, 'x'), std::string("has space"), std::string("tab\there"),
        std::string("line\nbreak"), std::string("del\x7f"), std::string("nul\0byte", 8),
        std::string("caf\xc3\xa9")}) {
    EXPECT_FALSE(IsUsableRequestId(id)) << absl::CEscape(id);
  }
}

TEST(RequestIdTest, FreshIdsAreSixteenHexDigitsAndDistinctAcrossThreads) {
  std::vector<std::vector<std::string>> drawn(4);
  std::vector<std::thread> threads;
  for (auto& ids : drawn) {
    threads.emplace_back([&ids] {
      for (int i = 0; i < 500; ++i) ids.push_back(NewRequestId());
    });
  }
  for (auto& thread : threads) thread.join();
  std::set<std::string> all;
  for (const auto& ids : drawn) {
    for (const std::string& id : ids) {
      EXPECT_THAT(id, MatchesRegex("[0-9a-f]{16}"));
      EXPECT_TRUE(IsUsableRequestId(id));
      all.insert(id);
    }
  }
  EXPECT_EQ(all.size(), 2000u);
}

// GetModel answers with the status the test set; ListModels always succeeds.
class ScriptedModelService final : public v1::ModelService::Service {
 public:
  void Answer(grpc::Status status, absl::Duration delay = absl::ZeroDuration()) {
    absl::MutexLock lock(&mu_);
    status_ = std::move(status);
    delay_ = delay;
  }
  grpc::Status GetModel(grpc::ServerContext*, const v1::GetModelRequest*,
                        v1::GetModelResponse*) override {
    grpc::Status status;
    absl::Duration delay;
    {
      absl::MutexLock lock(&mu_);
      status = status_;
      delay = delay_;
    }
    // A handler that takes this long, so the recorded duration can be checked against it.
    if (delay > absl::ZeroDuration()) absl::SleepFor(delay);
    return status;
  }
  grpc::Status ListModels(grpc::ServerContext*, const v1::ListModelsRequest*,
                          v1::ListModelsResponse*) override {
    return grpc::Status::OK;
  }

 private:
  absl::Mutex mu_;
  grpc::Status status_ ABSL_GUARDED_BY(mu_);
  absl::Duration delay_ ABSL_GUARDED_BY(mu_);
};

class RpcObserverTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::EnableDefaultHealthCheckService(true);
    grpc::ServerBuilder builder;
    builder.RegisterService(&service_);
    std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> observers;
    observers.push_back(std::make_unique<RpcObserverFactory>(&metrics_));
    builder.experimental().SetInterceptorCreators(std::move(observers));
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    channel_ = server_->InProcessChannel(grpc::ChannelArguments());
    stub_ = v1::ModelService::NewStub(channel_);
  }
  void TearDown() override {
    server_->Shutdown(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
    grpc::EnableDefaultHealthCheckService(false);
  }

  struct Answer {
    grpc::Status status;
    std::string request_id;  // from the response's initial metadata; "" when none came
  };
  // GetModel with `request_id` as x-request-id ("": none sent).
  Answer GetModel(const std::string& request_id = "") {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
    if (!request_id.empty()) context.AddMetadata(kRequestIdMetadata, request_id);
    v1::GetModelResponse response;
    Answer answer;
    answer.status = stub_->GetModel(&context, v1::GetModelRequest(), &response);
    const auto& metadata = context.GetServerInitialMetadata();
    EXPECT_LE(metadata.count(kRequestIdMetadata), 1u);
    auto it = metadata.find(kRequestIdMetadata);
    if (it != metadata.end()) answer.request_id = std::string(it->second.data(), it->second.size());
    return answer;
  }

  int64_t Calls(Rpc rpc) const {
    int64_t total = 0;
    for (int code = 0; code < kNumStatusCodes; ++code) total += metrics_.requests(rpc, code);
    return total;
  }

  ServerMetrics metrics_;
  ScriptedModelService service_;
  std::unique_ptr<grpc::Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::ModelService::Stub> stub_;
};

TEST_F(RpcObserverTest, TheClientsIdIsEchoedAndAMissingOrUnusableOneIsReplaced) {
  service_.Answer(grpc::Status::OK);
  EXPECT_EQ(GetModel("client-id-42").request_id, "client-id-42");
  EXPECT_EQ(GetModel(std::string(128, 'x')).request_id, std::string(128, 'x'));
  // On an error too: the handler's every return path gets one.
  service_.Answer(grpc::Status(grpc::StatusCode::NOT_FOUND, "model 'x' not found"));
  const Answer failed = GetModel("client-id-43");
  EXPECT_EQ(failed.status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(failed.request_id, "client-id-43");
  // None, one too long, one with a space: a fresh id for each call.
  std::set<std::string> fresh;
  for (const std::string& sent : {std::string(), std::string(129, 'x'), std::string("a b")}) {
    const std::string id = GetModel(sent).request_id;
    EXPECT_THAT(id, MatchesRegex("[0-9a-f]{16}")) << "sent '" << sent << "'";
    fresh.insert(id);
  }
  EXPECT_EQ(fresh.size(), 3u);
}

TEST_F(RpcObserverTest, EveryCallIsCountedOnceByRpcAndFinalCode) {
  service_.Answer(grpc::Status::OK);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(GetModel().status.ok());
  service_.Answer(grpc::Status(grpc::StatusCode::NOT_FOUND, "no such model"));
  for (int i = 0; i < 2; ++i)
    ASSERT_EQ(GetModel().status.error_code(), grpc::StatusCode::NOT_FOUND);
  service_.Answer(grpc::Status(grpc::StatusCode::PERMISSION_DENIED, "needs the admin scope"));
  ASSERT_EQ(GetModel().status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  {
    grpc::ClientContext context;
    v1::ListModelsResponse response;
    ASSERT_TRUE(stub_->ListModels(&context, v1::ListModelsRequest(), &response).ok());
  }
  EXPECT_EQ(metrics_.requests(Rpc::kGetModel, 0), 3);
  EXPECT_EQ(metrics_.requests(Rpc::kGetModel, static_cast<int>(absl::StatusCode::kNotFound)), 2);
  EXPECT_EQ(
      metrics_.requests(Rpc::kGetModel, static_cast<int>(absl::StatusCode::kPermissionDenied)), 1);
  EXPECT_EQ(Calls(Rpc::kGetModel), 6);
  EXPECT_EQ(metrics_.requests(Rpc::kListModels, 0), 1);
  EXPECT_EQ(Calls(Rpc::kListModels), 1);
  EXPECT_EQ(Calls(Rpc::kDeleteModel), 0);
}

TEST_F(RpcObserverTest, TheDurationRunsFromTheStartOfTheCallUntilItsStatus) {
  const absl::Duration handler = absl::Milliseconds(40);
  service_.Answer(grpc::Status::OK, handler);
  const absl::Time start = absl::Now();
  ASSERT_TRUE(GetModel().status.ok());
  const double call_seconds = absl::ToDoubleSeconds(absl::Now() - start);
  const auto samples = ParseSamples(metrics_.Render());
  const double sum = samples.at("invnet_rpc_duration_seconds_sum{rpc=\"GetModel\"}");
  EXPECT_EQ(samples.at("invnet_rpc_duration_seconds_count{rpc=\"GetModel\"}"), 1);
  // At least the handler's time, at most the client's.
  EXPECT_GE(sum, absl::ToDoubleSeconds(handler));
  EXPECT_LE(sum, call_seconds);
}

TEST_F(RpcObserverTest, AFailedCallIsOneLogLineWarningForTheCallersErrorsErrorForTheServers) {
  struct Case {
    grpc::StatusCode code;
    std::string code_name;
    google::LogSeverity severity;
  };
  const std::vector<Case> cases = {
      {grpc::StatusCode::INVALID_ARGUMENT, "INVALID_ARGUMENT", google::GLOG_WARNING},
      {grpc::StatusCode::NOT_FOUND, "NOT_FOUND", google::GLOG_WARNING},
      {grpc::StatusCode::CANCELLED, "CANCELLED", google::GLOG_WARNING},
      {grpc::StatusCode::RESOURCE_EXHAUSTED, "RESOURCE_EXHAUSTED", google::GLOG_WARNING},
      {grpc::StatusCode::UNAUTHENTICATED, "UNAUTHENTICATED", google::GLOG_WARNING},
      {grpc::StatusCode::INTERNAL, "INTERNAL", google::GLOG_ERROR},
      {grpc::StatusCode::UNKNOWN, "UNKNOWN", google::GLOG_ERROR},
      {grpc::StatusCode::DATA_LOSS, "DATA_LOSS", google::GLOG_ERROR},
  };
  CapturingSink sink;
  google::AddLogSink(&sink);
  for (size_t i = 0; i < cases.size(); ++i) {
    // A message over several lines still makes one log line.
    service_.Answer(grpc::Status(cases[i].code, absl::StrCat("first\nsecond\r\nthird ", i)));
    EXPECT_EQ(GetModel(absl::StrCat("log-", i)).status.error_code(), cases[i].code);
  }
  service_.Answer(grpc::Status::OK);
  EXPECT_TRUE(GetModel("log-ok").status.ok());
  // No ASSERT while the sink is registered: it must not outlive this frame registered.
  google::RemoveLogSink(&sink);
  for (size_t i = 0; i < cases.size(); ++i) {
    auto lines = sink.Matching(absl::StrCat("request_id=log-", i, " "));
    ASSERT_EQ(lines.size(), 1u) << cases[i].code_name;
    EXPECT_EQ(lines[0].first, cases[i].severity) << cases[i].code_name;
    EXPECT_EQ(lines[0].second, absl::StrCat("GetModel request_id=log-", i, " code=",
                                            cases[i].code_name, ": first second  third ", i));
  }
  EXPECT_TRUE(sink.Matching("log-ok").empty());  // successes are not logged
}

TEST_F(RpcObserverTest, AnUnparsableRequestIsInvalidArgumentNamingTheRpcAndCountedSo) {
  // What gRPC's synchronous server sends when the request body does not parse (status_util.h).
  service_.Answer(grpc::Status(grpc::StatusCode::INTERNAL, ""));
  const Answer unparsable = GetModel("bad-body");
  EXPECT_EQ(unparsable.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(unparsable.status.error_message(), HasSubstr("GetModel"));
  EXPECT_EQ(metrics_.requests(Rpc::kGetModel, static_cast<int>(absl::StatusCode::kInvalidArgument)),
            1);
  EXPECT_EQ(metrics_.requests(Rpc::kGetModel, static_cast<int>(absl::StatusCode::kInternal)), 0);
  // An INTERNAL that says something is the server's error, and stays one.
  service_.Answer(grpc::Status(grpc::StatusCode::INTERNAL, "a broken invariant"));
  const Answer internal = GetModel();
  EXPECT_EQ(internal.status.error_code(), grpc::StatusCode::INTERNAL);
  EXPECT_EQ(internal.status.error_message(), "a broken invariant");
  EXPECT_EQ(metrics_.requests(Rpc::kGetModel, static_cast<int>(absl::StatusCode::kInternal)), 1);
}

TEST_F(RpcObserverTest, HealthChecksAreNotObserved) {
  grpc::GenericStub generic(channel_);
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
  grpc::Slice empty("");  // an empty HealthCheckRequest asks about the whole server
  grpc::ByteBuffer request(&empty, 1);
  grpc::ByteBuffer response;
  absl::Notification done;
  grpc::Status status;
  generic.UnaryCall(&context, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request,
                    &response, [&](grpc::Status s) {
                      status = std::move(s);
                      done.Notify();
                    });
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(15)));
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(context.GetServerInitialMetadata().count(kRequestIdMetadata), 0u);
  for (int rpc = 0; rpc < kNumRpcs; ++rpc) EXPECT_EQ(Calls(static_cast<Rpc>(rpc)), 0) << rpc;
}

}  // namespace
}  // namespace invnet::server
