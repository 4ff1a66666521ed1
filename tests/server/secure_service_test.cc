// TLS, mutual TLS and bearer tokens through real gRPC: servers started in process
// (Server::Start on port 0) and reached over TCP with the real client library
// (InvnetClient::Connect), certificates made by `openssl` at test time.

#include <fstream>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "client/client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/server.h"
#include "tests/testing/certificates.h"
#include "tests/testing/scratch_directory.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/train_requests.h"

namespace invnet::server {
namespace {

using ::invnet::client::ClientOptions;
using ::invnet::client::DenseTensor;
using ::invnet::client::InvnetClient;
using ::invnet::testing::IsOk;
using ::invnet::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;

constexpr char kInferToken[] = "infer-2f6c1d9a8b7e4f30a5c2";
constexpr char kAdminToken[] = "admin-9e8d7c6b5a4f3e2d1c0b";

invnet::testing::ScratchDirectory* scratch = nullptr;
std::string* dir = nullptr;
invnet::testing::TestCertificates* certs = nullptr;

std::string Path(const std::string& name) { return *dir + "/" + name; }

std::string WriteFile(const std::string& name, const std::string& contents) {
  std::ofstream(Path(name)) << contents;
  return Path(name);
}

absl::StatusOr<std::unique_ptr<Server>> StartServer(ServerOptions options) {
  static int count = 0;
  options.address = "127.0.0.1:0";
  options.repository = Path(absl::StrCat("repository", ++count));
  options.torch_threads = 1;
  return Server::Start(options);
}

ServerOptions TlsOptions() {
  ServerOptions options;
  options.tls_cert_file = certs->server_cert;
  options.tls_key_file = certs->server_key;
  return options;
}

// TLS trusting the test CA, with a token file ("" for none).
ClientOptions TlsClient(const std::string& token_file = "") {
  ClientOptions options;
  options.use_tls = true;
  options.tls_ca_file = certs->ca_cert;
  options.token_file = token_file;
  options.rpc_timeout = options.compute_timeout = absl::Seconds(30);
  return options;
}

std::unique_ptr<InvnetClient> Connect(const Server& server, const ClientOptions& options) {
  return InvnetClient::Connect(absl::StrCat("127.0.0.1:", server.port()), options).value();
}

v1::Tensor Batch(int64_t rows, int64_t cols) {
  DenseTensor t = DenseTensor::Matrix(rows, cols);
  for (size_t i = 0; i < t.values.size(); ++i) t.values[i] = 0.1f * static_cast<float>(i);
  v1::Tensor proto;
  t.ToProto(&proto);
  return proto;
}

// Trains `name` to completion through `client`.
absl::Status Train(const InvnetClient& client, const std::string& name) {
  absl::StatusOr<v1::TrainResponse> started = client.Train(testing::SmallTrainRequest(name));
  if (!started.ok()) return started.status();
  absl::StatusOr<v1::TrainingJob> job = client.WatchTrainingJob(started->job().job_id());
  if (!job.ok()) return job.status();
  if (job->state() != v1::JOB_STATE_SUCCEEDED) {
    return absl::InternalError(absl::StrCat("job ended ", v1::JobState_Name(job->state())));
  }
  return absl::OkStatus();
}

class SecureServiceTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    scratch = new invnet::testing::ScratchDirectory("secure_test");
    dir = new std::string(scratch->path());
    absl::StatusOr<invnet::testing::TestCertificates> made =
        invnet::testing::MakeTestCertificates(*dir);
    ASSERT_THAT(made, IsOk());
    certs = new invnet::testing::TestCertificates(*made);
    tokens_file_ =
        new std::string(WriteFile("tokens", absl::StrCat("# scope token\ninfer ", kInferToken,
                                                         "\nadmin ", kAdminToken, "\n")));
    infer_token_ = new std::string(WriteFile("infer.token", absl::StrCat(kInferToken, "\n")));
    admin_token_ = new std::string(WriteFile("admin.token", kAdminToken));
    wrong_token_ = new std::string(WriteFile("wrong.token", "infer-2f6c1d9a8b7e4f30a5c3"));

    ServerOptions options = TlsOptions();
    options.auth_tokens_file = *tokens_file_;
    absl::StatusOr<std::unique_ptr<Server>> server = StartServer(options);
    ASSERT_THAT(server, IsOk());
    server_ = server->release();
    ASSERT_THAT(Train(*Connect(*server_, TlsClient(*admin_token_)), "toy"), IsOk());
  }
  static void TearDownTestSuite() {
    delete server_;
    delete scratch;  // the certificates, tokens and repositories with it
  }

  // The code of every RPC of the four services, called with harmless requests: reads of the
  // trained model, and writes that fail validation after the authorization check.
  static std::map<std::string, absl::StatusCode> CodesOfEveryRpc(const InvnetClient& client) {
    std::map<std::string, absl::StatusCode> codes;
    v1::ReconstructRequest reconstruct;
    reconstruct.set_model("toy");
    *reconstruct.mutable_measurements() = Batch(2, 2);
    codes["Reconstruct"] = client.Reconstruct(reconstruct).status().code();
    v1::ForwardRequest forward;
    forward.set_model("toy");
    *forward.mutable_signals() = Batch(2, 2);
    codes["Forward"] = client.Forward(forward).status().code();
    v1::EstimateRequest estimate;
    estimate.set_model("toy");
    *estimate.mutable_measurements() = Batch(2, 2);
    estimate.add_estimators(v1::ESTIMATOR_POSTERIOR_MEAN);
    codes["Estimate"] = client.Estimate(estimate).status().code();
    v1::DrawTestPairsRequest pairs;
    pairs.set_model("toy");
    pairs.set_count(3);
    codes["DrawTestPairs"] = client.DrawTestPairs(pairs).status().code();
    v1::GetModelRequest get_model;
    get_model.set_name("toy");
    codes["GetModel"] = client.GetModel(get_model).status().code();
    codes["ListModels"] = client.ListModels().status().code();
    codes["ListDatasets"] = client.ListDatasets().status().code();
    v1::GetTrainingJobRequest get_job;
    get_job.set_job_id("no-such-job");
    codes["GetTrainingJob"] = client.GetTrainingJob(get_job).status().code();
    codes["ListTrainingJobs"] = client.ListTrainingJobs().status().code();
    codes["WatchTrainingJob"] = client.WatchTrainingJob("no-such-job").status().code();
    // Writes.
    codes["Train"] = client.Train(testing::SmallTrainRequest("Not A Name")).status().code();
    v1::CancelTrainingJobRequest cancel;
    cancel.set_job_id("no-such-job");
    codes["CancelTrainingJob"] = client.CancelTrainingJob(cancel).status().code();
    v1::DeleteModelRequest delete_model;
    delete_model.set_name("no-such-model");
    delete_model.set_all_versions(true);
    codes["DeleteModel"] = client.DeleteModel(delete_model).status().code();
    DenseTensor samples = DenseTensor::Matrix(2, 2);
    codes["UploadDataset"] = client.UploadDataset("Not A Name", samples).status().code();
    v1::DeleteDatasetRequest delete_dataset;
    delete_dataset.set_name("no-such-dataset");
    codes["DeleteDataset"] = client.DeleteDataset(delete_dataset).status().code();
    return codes;
  }

  static const std::set<std::string>& AdminRpcs() {
    static const auto* rpcs = new std::set<std::string>{"Train", "CancelTrainingJob", "DeleteModel",
                                                        "UploadDataset", "DeleteDataset"};
    return *rpcs;
  }

  static Server* server_;
  static std::string* tokens_file_;
  static std::string* infer_token_;
  static std::string* admin_token_;
  static std::string* wrong_token_;
};

Server* SecureServiceTest::server_ = nullptr;
std::string* SecureServiceTest::tokens_file_ = nullptr;
std::string* SecureServiceTest::infer_token_ = nullptr;
std::string* SecureServiceTest::admin_token_ = nullptr;
std::string* SecureServiceTest::wrong_token_ = nullptr;

// --- TLS ---------------------------------------------------------------------------------------

TEST_F(SecureServiceTest, TlsClientTrustingTheCaWorks) {
  auto client = Connect(*server_, TlsClient(*infer_token_));
  EXPECT_THAT(client->Health(), IsOk());
  absl::StatusOr<v1::ListModelsResponse> models = client->ListModels();
  ASSERT_THAT(models, IsOk());
  ASSERT_EQ(models->models_size(), 1);
  EXPECT_EQ(models->models(0).name(), "toy");
}

TEST_F(SecureServiceTest, TlsClientReachesTheServerByHostName) {
  // The certificate names localhost as a DNS name and 127.0.0.1 as an IP address: both verify.
  auto client =
      InvnetClient::Connect(absl::StrCat("localhost:", server_->port()), TlsClient()).value();
  EXPECT_THAT(client->Health(), IsOk());
}

TEST_F(SecureServiceTest, PlaintextClientToTlsServerIsUnavailable) {
  ClientOptions options;
  options.token_file = *infer_token_;
  auto client = Connect(*server_, options);
  EXPECT_THAT(client->Health(), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(client->ListModels(), StatusIs(absl::StatusCode::kUnavailable));
}

TEST_F(SecureServiceTest, ClientTrustingAnotherCaIsUnavailable) {
  ClientOptions options = TlsClient(*infer_token_);
  options.tls_ca_file = certs->other_ca_cert;
  auto client = Connect(*server_, options);
  EXPECT_THAT(client->Health(), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(client->ListModels(), StatusIs(absl::StatusCode::kUnavailable));
}

TEST_F(SecureServiceTest, MutualTlsRequiresAClientCertificateFromTheCa) {
  ServerOptions server_options = TlsOptions();
  server_options.tls_client_ca_file = certs->ca_cert;
  absl::StatusOr<std::unique_ptr<Server>> mtls = StartServer(server_options);
  ASSERT_THAT(mtls, IsOk());

  auto anonymous = Connect(**mtls, TlsClient());
  EXPECT_THAT(anonymous->Health(), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(anonymous->ListModels(), StatusIs(absl::StatusCode::kUnavailable));

  ClientOptions with_certificate = TlsClient();
  with_certificate.tls_cert_file = certs->client_cert;
  with_certificate.tls_key_file = certs->client_key;
  auto client = Connect(**mtls, with_certificate);
  EXPECT_THAT(client->Health(), IsOk());
  EXPECT_THAT(client->ListModels(), IsOk());

  // The server's own certificate is signed by the CA too, but a server certificate is not one
  // for clients (extendedKeyUsage serverAuth): refused like no certificate at all.
  ClientOptions server_certificate = TlsClient();
  server_certificate.tls_cert_file = certs->server_cert;
  server_certificate.tls_key_file = certs->server_key;
  EXPECT_THAT(Connect(**mtls, server_certificate)->ListModels(),
              StatusIs(absl::StatusCode::kUnavailable));
}

// --- Bearer tokens ---------------------------------------------------------------------------

TEST_F(SecureServiceTest, NoTokenIsUnauthenticated) {
  auto client = Connect(*server_, TlsClient());
  EXPECT_THAT(client->ListModels(),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("authorization:")));
  for (const auto& [rpc, code] : CodesOfEveryRpc(*client)) {
    EXPECT_EQ(code, absl::StatusCode::kUnauthenticated) << rpc;
  }
}

TEST_F(SecureServiceTest, WrongTokenIsUnauthenticated) {
  auto client = Connect(*server_, TlsClient(*wrong_token_));
  EXPECT_THAT(client->ListModels(), StatusIs(absl::StatusCode::kUnauthenticated,
                                             HasSubstr("authorization: unknown bearer token")));
  for (const auto& [rpc, code] : CodesOfEveryRpc(*client)) {
    EXPECT_EQ(code, absl::StatusCode::kUnauthenticated) << rpc;
  }
}

TEST_F(SecureServiceTest, InferTokenMayReadAndComputeButNotChange) {
  auto client = Connect(*server_, TlsClient(*infer_token_));
  v1::ReconstructRequest reconstruct;
  reconstruct.set_model("toy");
  *reconstruct.mutable_measurements() = Batch(3, 2);
  EXPECT_THAT(client->Reconstruct(reconstruct), IsOk());
  EXPECT_THAT(client->ListModels(), IsOk());
  EXPECT_THAT(client->Train(testing::SmallTrainRequest("infer-trained")),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("'admin' scope")));
  v1::DeleteModelRequest remove;
  remove.set_name("toy");
  remove.set_all_versions(true);
  EXPECT_THAT(client->DeleteModel(remove),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("'admin' scope")));
  EXPECT_EQ(client->ListModels()->models_size(), 1);  // toy is still there

  for (const auto& [rpc, code] : CodesOfEveryRpc(*client)) {
    if (AdminRpcs().count(rpc)) {
      EXPECT_EQ(code, absl::StatusCode::kPermissionDenied) << rpc;
    } else {
      EXPECT_NE(code, absl::StatusCode::kPermissionDenied) << rpc;
      EXPECT_NE(code, absl::StatusCode::kUnauthenticated) << rpc;
    }
  }
}

TEST_F(SecureServiceTest, AdminTokenMayDoEverything) {
  auto client = Connect(*server_, TlsClient(*admin_token_));
  ASSERT_THAT(Train(*client, "scratch"), IsOk());
  v1::ReconstructRequest reconstruct;
  reconstruct.set_model("scratch");
  *reconstruct.mutable_measurements() = Batch(3, 2);
  EXPECT_THAT(client->Reconstruct(reconstruct), IsOk());
  v1::DeleteModelRequest remove;
  remove.set_name("scratch");
  remove.set_all_versions(true);
  EXPECT_THAT(client->DeleteModel(remove), IsOk());

  for (const auto& [rpc, code] : CodesOfEveryRpc(*client)) {
    EXPECT_NE(code, absl::StatusCode::kPermissionDenied) << rpc;
    EXPECT_NE(code, absl::StatusCode::kUnauthenticated) << rpc;
    EXPECT_NE(code, absl::StatusCode::kInternal) << rpc;  // e.g. a handler's method name typo
  }
}

TEST_F(SecureServiceTest, HealthNeedsNoToken) {
  auto client = Connect(*server_, TlsClient());
  absl::StatusOr<InvnetClient::HealthStatus> health = client->Health();
  ASSERT_THAT(health, IsOk());
  EXPECT_EQ(*health, grpc::health::v1::HealthCheckResponse::SERVING);
  EXPECT_THAT(client->Health("invnet.v1.ReconstructionService"), IsOk());
  EXPECT_THAT(client->WaitUntilServing(absl::Seconds(10)), IsOk());
}

TEST_F(SecureServiceTest, TokensWorkOverPlaintextToo) {
  ServerOptions options;
  options.auth_tokens_file = *tokens_file_;
  absl::StatusOr<std::unique_ptr<Server>> plain = StartServer(options);
  ASSERT_THAT(plain, IsOk());
  ClientOptions infer;
  infer.token_file = *infer_token_;
  EXPECT_THAT(Connect(**plain, infer)->ListModels(), IsOk());
  EXPECT_THAT(Connect(**plain, infer)->DeleteDataset({}),
              StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_THAT(Connect(**plain, ClientOptions())->ListModels(),
              StatusIs(absl::StatusCode::kUnauthenticated));
}

// --- Start and Connect errors ------------------------------------------------------------------

TEST_F(SecureServiceTest, MalformedTokenFileFailsStartNamingTheLine) {
  ServerOptions options;
  options.auth_tokens_file =
      WriteFile("bad.tokens", absl::StrCat("admin ", kAdminToken, "\n\nsuperuser ", kInferToken));
  EXPECT_THAT(StartServer(options),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("auth_tokens_file: "), HasSubstr("bad.tokens:3:"),
                             HasSubstr("unknown scope 'superuser'"))));
  options.auth_tokens_file = Path("missing.tokens");
  EXPECT_THAT(StartServer(options),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("auth_tokens_file: ")));
}

TEST_F(SecureServiceTest, BadTlsOptionsFailStartNamingTheOption) {
  ServerOptions options = TlsOptions();
  options.tls_key_file = "";
  EXPECT_THAT(StartServer(options),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("tls_key_file")));
  options = TlsOptions();
  options.tls_cert_file = Path("missing.pem");
  EXPECT_THAT(StartServer(options),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("tls_cert_file: "), HasSubstr("missing.pem"))));
  options = TlsOptions();
  options.tls_key_file = certs->server_cert;  // a certificate where the key belongs
  EXPECT_THAT(StartServer(options),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("tls_key_file: ")));
  options = TlsOptions();
  options.tls_client_ca_file = WriteFile("not.pem", "hello\n");
  EXPECT_THAT(StartServer(options),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("tls_client_ca_file: ")));
  options = ServerOptions();
  options.tls_client_ca_file = certs->ca_cert;
  EXPECT_THAT(StartServer(options),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("tls_client_ca_file: ")));
  // A key that does not belong to the certificate.
  options = TlsOptions();
  options.tls_key_file = certs->client_key;
  EXPECT_THAT(StartServer(options), StatusIs(absl::StatusCode::kUnavailable, HasSubstr("TLS")));
}

TEST_F(SecureServiceTest, BadClientOptionsFailConnectNamingTheOption) {
  const std::string target = absl::StrCat("127.0.0.1:", server_->port());
  ClientOptions options;
  options.tls_ca_file = certs->ca_cert;  // without use_tls
  EXPECT_THAT(InvnetClient::Connect(target, options),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("tls_ca_file")));
  options = TlsClient(Path("missing.token"));
  EXPECT_THAT(InvnetClient::Connect(target, options),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("token_file: ")));
  options = TlsClient(WriteFile("two-words.token", "infer abcdefabcdefabcdef\n"));
  EXPECT_THAT(InvnetClient::Connect(target, options),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("token alone")));
  options = TlsClient();
  options.tls_cert_file = certs->client_cert;
  EXPECT_THAT(InvnetClient::Connect(target, options),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("tls_key_file")));
  options = TlsClient();
  options.tls_ca_file = Path("missing.pem");
  EXPECT_THAT(InvnetClient::Connect(target, options),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("tls_ca_file: ")));
}

}  // namespace
}  // namespace invnet::server
