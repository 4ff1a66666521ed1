// Authorizer: the token file's format and the bearer-token check, without a server (the checks
// through real gRPC calls are in secure_service_test.cc).

#include "server/auth.h"

#include <fstream>
#include <set>
#include <string>

#include <grpcpp/server_context.h>

#include "gmock/gmock.h"
#include "google/protobuf/descriptor.h"
#include "gtest/gtest.h"
#include "invnet/v1/dataset_service.grpc.pb.h"
#include "invnet/v1/model_service.grpc.pb.h"
#include "invnet/v1/reconstruction_service.grpc.pb.h"
#include "invnet/v1/training_service.grpc.pb.h"
#include "tests/testing/scratch_directory.h"
#include "tests/testing/status_matchers.h"

namespace invnet::server {
namespace {

using ::invnet::testing::IsOk;
using ::invnet::testing::StatusIs;
using ::testing::AllOf;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;

constexpr char kInferToken[] = "infer-token-0123456789abcdef";
constexpr char kAdminToken[] = "admin-token-0123456789abcdef";

Authorizer TwoTokens() {
  return Authorizer::FromText(absl::StrCat("# invnet tokens\n\ninfer ", kInferToken, "\n  admin\t",
                                           kAdminToken, "  \n"),
                              "tokens")
      .value();
}

std::string Bearer(absl::string_view token) { return absl::StrCat("Bearer ", token); }

TEST(AuthorizerTest, DefaultAllowsEverything) {
  Authorizer open;
  EXPECT_FALSE(open.enabled());
  EXPECT_THAT(open.CheckHeader(absl::nullopt, Scope::kAdmin), IsOk());
  EXPECT_THAT(open.CheckHeader("Bearer nonsense", Scope::kAdmin), IsOk());
}

TEST(AuthorizerTest, ParsesTokensIgnoringCommentsAndBlankLines) {
  Authorizer auth = TwoTokens();
  EXPECT_TRUE(auth.enabled());
  EXPECT_EQ(auth.num_tokens(), 2);
}

TEST(AuthorizerTest, InferTokenHasOnlyTheInferScope) {
  Authorizer auth = TwoTokens();
  EXPECT_THAT(auth.CheckHeader(Bearer(kInferToken), Scope::kInfer), IsOk());
  EXPECT_THAT(auth.CheckHeader(Bearer(kInferToken), Scope::kAdmin),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       AllOf(HasSubstr("'admin' scope"), HasSubstr("has 'infer'"))));
}

TEST(AuthorizerTest, AdminTokenImpliesInfer) {
  Authorizer auth = TwoTokens();
  EXPECT_THAT(auth.CheckHeader(Bearer(kAdminToken), Scope::kAdmin), IsOk());
  EXPECT_THAT(auth.CheckHeader(Bearer(kAdminToken), Scope::kInfer), IsOk());
}

TEST(AuthorizerTest, SchemeIsCaseInsensitive) {
  Authorizer auth = TwoTokens();
  EXPECT_THAT(auth.CheckHeader(absl::StrCat("bearer ", kAdminToken), Scope::kAdmin), IsOk());
  EXPECT_THAT(auth.CheckHeader(absl::StrCat("BEARER  ", kAdminToken), Scope::kAdmin), IsOk());
}

TEST(AuthorizerTest, RejectsMissingMalformedAndUnknownCredentials) {
  Authorizer auth = TwoTokens();
  EXPECT_THAT(auth.CheckHeader(absl::nullopt, Scope::kInfer),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("authorization:")));
  EXPECT_THAT(auth.CheckHeader(kInferToken, Scope::kInfer),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("'Bearer <token>'")));
  EXPECT_THAT(auth.CheckHeader(absl::StrCat("Basic ", kInferToken), Scope::kInfer),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("'Bearer <token>'")));
  EXPECT_THAT(auth.CheckHeader("Bearer ", Scope::kInfer),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("token is empty")));
  // A prefix, an extension and a near miss of a real token.
  const std::string token = kInferToken;
  for (const std::string& guess :
       {token.substr(0, token.size() - 1), token + "0", token.substr(0, token.size() - 1) + "X"}) {
    EXPECT_THAT(auth.CheckHeader(Bearer(guess), Scope::kInfer),
                StatusIs(absl::StatusCode::kUnauthenticated,
                         HasSubstr("authorization: unknown bearer token")))
        << guess;
  }
}

TEST(AuthorizerTest, MalformedLinesNameTheLine) {
  const std::string good = absl::StrCat("infer ", kInferToken, "\n");
  struct Case {
    std::string text;
    std::string message;
  };
  for (const Case& c : std::vector<Case>{
           {good + "# comment\nroot " + kAdminToken + "\n", "tokens:3: unknown scope 'root'"},
           {good + kAdminToken + "\n", "tokens:2: expected '<scope> <token>' (2 words), found 1"},
           {good + "admin " + kAdminToken + " extra\n", "tokens:2: expected"},
           {good + "admin short\n", "tokens:2: the token has 5 characters, at least 16"},
           {good + "admin " + std::string(20, 'a') + "\x01\n", "tokens:2: the token must"},
           {good + "admin " + std::string(16, 'a') + "\x7f\n", "tokens:2: the token must"},
           {good + "\nadmin " + kInferToken + "\n", "tokens:3: the same token as line 1"},
           {"# only comments\n\n", "tokens: no tokens"},
           {"", "tokens: no tokens"},
       }) {
    EXPECT_THAT(Authorizer::FromText(c.text, "tokens"),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.message)))
        << c.text;
  }
}

TEST(ScopeTableTest, NamesEveryRpcOfTheFourServicesAndNothingElse) {
  // Each service's descriptor from its file, reached through one of its messages (which also
  // links the generated code that registers the file).
  const std::pair<const google::protobuf::FileDescriptor*, const char*> services[] = {
      {v1::ReconstructRequest::descriptor()->file(), "ReconstructionService"},
      {v1::TrainRequest::descriptor()->file(), "TrainingService"},
      {v1::ListModelsRequest::descriptor()->file(), "ModelService"},
      {v1::ListDatasetsRequest::descriptor()->file(), "DatasetService"}};
  std::set<std::string> rpcs;
  for (const auto& [file, name] : services) {
    const google::protobuf::ServiceDescriptor* service = file->FindServiceByName(name);
    ASSERT_NE(service, nullptr) << name;
    for (int i = 0; i < service->method_count(); ++i) {
      rpcs.insert(absl::StrCat("/", service->full_name(), "/", service->method(i)->name()));
    }
  }
  EXPECT_EQ(rpcs.size(), 16u);
  const std::vector<std::string> listed = MethodsWithScope();
  EXPECT_EQ(std::set<std::string>(listed.begin(), listed.end()).size(), listed.size())
      << "a method is listed twice";
  EXPECT_THAT(std::set<std::string>(listed.begin(), listed.end()), ElementsAreArray(rpcs));
}

TEST(ScopeTableTest, OnlyWhatChangesTheServerNeedsAdmin) {
  std::set<std::string> admin;
  for (const std::string& method : MethodsWithScope()) {
    if (RequiredScope(method) == Scope::kAdmin) admin.insert(method);
  }
  EXPECT_THAT(admin, ElementsAreArray(std::set<std::string>{
                         "/invnet.v1.DatasetService/DeleteDataset",
                         "/invnet.v1.DatasetService/UploadDataset",
                         "/invnet.v1.ModelService/DeleteModel",
                         "/invnet.v1.TrainingService/CancelTrainingJob",
                         "/invnet.v1.TrainingService/Train"}));
  EXPECT_EQ(RequiredScope("/invnet.v1.TrainingService/Trian"), std::nullopt);
}

TEST(ScopeTableTest, AMethodWithoutAScopeIsRefusedEvenWithoutTokens) {
  const grpc::ServerContext context;
  EXPECT_THAT(Authorizer().Check(context, "/invnet.v1.TrainingService/Trian"),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("no authorization scope")));
  EXPECT_THAT(Authorizer().Check(context, "/invnet.v1.TrainingService/Train"), IsOk());
  EXPECT_THAT(TwoTokens().Check(context, "/invnet.v1.TrainingService/Train"),
              StatusIs(absl::StatusCode::kUnauthenticated));
}

TEST(AuthorizerTest, FromFile) {
  const invnet::testing::ScratchDirectory scratch("auth_test");
  const std::string dir = scratch.path();
  const std::string path = dir + "/tokens";
  std::ofstream(path) << "admin " << kAdminToken << "\n";
  absl::StatusOr<Authorizer> auth = Authorizer::FromFile(path);
  ASSERT_THAT(auth, IsOk());
  EXPECT_THAT(auth->CheckHeader(Bearer(kAdminToken), Scope::kAdmin), IsOk());
  std::ofstream(path) << "admin " << kAdminToken << "\nadmin\n";
  EXPECT_THAT(Authorizer::FromFile(path),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(path + ":2:")));
  EXPECT_THAT(Authorizer::FromFile(dir + "/missing"), StatusIs(absl::StatusCode::kNotFound));
}

}  // namespace
}  // namespace invnet::server
