// The four services end to end through gRPC, in process and over TCP on port 0: every RPC's
// success path and every class of bad input, with the exact status code, and the server keeps
// serving after each.

#include <cmath>
#include <cstdlib>
#include <thread>

#include <grpcpp/grpcpp.h>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "invnet/v1/dataset_service.grpc.pb.h"
#include "invnet/v1/model_service.grpc.pb.h"
#include "invnet/v1/reconstruction_service.grpc.pb.h"
#include "invnet/v1/training_service.grpc.pb.h"
#include "server/server.h"
#include "tests/testing/train_requests.h"

namespace invnet::server {
namespace {

using ::testing::HasSubstr;
using ::invnet::testing::SmallTrainRequest;

std::string MakeTempDir() {
  char tmpl[] = "/tmp/invnet_service_test_XXXXXX";
  return mkdtemp(tmpl);
}

v1::Tensor Batch(int64_t rows, int64_t cols, float fill_scale = 0.5f) {
  v1::Tensor t;
  t.add_shape(rows);
  t.add_shape(cols);
  for (int64_t i = 0; i < rows * cols; ++i) {
    t.add_values(fill_scale * std::sin(0.7f * static_cast<float>(i) + 0.3f));
  }
  return t;
}

enum class Transport { kInProcess, kTcp };

class ServiceTest : public ::testing::TestWithParam<Transport> {
 protected:
  static void SetUpTestSuite() {
    repository_ = new std::string(MakeTempDir());
    ServerOptions options;
    options.address = "127.0.0.1:0";
    options.repository = *repository_;
    options.torch_threads = 1;
    options.max_concurrent_jobs = 2;
    options.max_dataset_bytes = 1 << 20;
    options.max_message_bytes = 8 << 20;
    server_ = Server::Start(options).value().release();
    // One trained model for the serving tests.
    auto channel = server_->InProcessChannel();
    auto training = v1::TrainingService::NewStub(channel);
    grpc::ClientContext context;
    v1::TrainResponse response;
    ASSERT_TRUE(training
                    ->Train(&context, SmallTrainRequest("toy", v1::LOSS_DIVERGENCE, 40), &response)
                    .ok());
    WaitForJob(*training, response.job().job_id());
    // A wide model whose inverse is expensive, for the deadline test.
    v1::TrainRequest wide = SmallTrainRequest("wide", v1::LOSS_APPROXIMATION, 2);
    wide.mutable_architecture()->set_hidden_width(512);
    wide.mutable_architecture()->set_num_blocks(4);
    grpc::ClientContext wide_context;
    ASSERT_TRUE(training->Train(&wide_context, wide, &response).ok());
    WaitForJob(*training, response.job().job_id());
  }
  static void TearDownTestSuite() {
    delete server_;
    std::system(("rm -rf " + *repository_).c_str());
    delete repository_;
  }

  static v1::TrainingJob WaitForJob(v1::TrainingService::Stub& stub, const std::string& id) {
    grpc::ClientContext context;
    v1::WatchTrainingJobRequest request;
    request.set_job_id(id);
    auto reader = stub.WatchTrainingJob(&context, request);
    v1::WatchTrainingJobResponse update;
    v1::TrainingJob last;
    while (reader->Read(&update)) last = update.job();
    EXPECT_TRUE(reader->Finish().ok());
    return last;
  }

  void SetUp() override {
    if (GetParam() == Transport::kInProcess) {
      channel_ = server_->InProcessChannel();
    } else {
      grpc::ChannelArguments args;
      args.SetMaxReceiveMessageSize(64 << 20);
      args.SetMaxSendMessageSize(64 << 20);
      channel_ = grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", server_->port()),
                                           grpc::InsecureChannelCredentials(), args);
    }
    reconstruction_ = v1::ReconstructionService::NewStub(channel_);
    training_ = v1::TrainingService::NewStub(channel_);
    models_ = v1::ModelService::NewStub(channel_);
    datasets_ = v1::DatasetService::NewStub(channel_);
  }

  grpc::Status Reconstruct(const v1::ReconstructRequest& request,
                           v1::ReconstructResponse* response) {
    grpc::ClientContext context;
    return reconstruction_->Reconstruct(&context, request, response);
  }

  // The server still answers a good request.
  void ExpectStillServing() {
    v1::ReconstructRequest request;
    request.set_model("toy");
    *request.mutable_measurements() = Batch(3, 2);
    v1::ReconstructResponse response;
    grpc::Status status = Reconstruct(request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
  }

  void ExpectCode(const grpc::Status& status, grpc::StatusCode code, const std::string& text) {
    EXPECT_EQ(status.error_code(), code) << status.error_message();
    EXPECT_THAT(status.error_message(), HasSubstr(text));
    ExpectStillServing();
  }

  static std::string* repository_;
  static Server* server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::ReconstructionService::Stub> reconstruction_;
  std::unique_ptr<v1::TrainingService::Stub> training_;
  std::unique_ptr<v1::ModelService::Stub> models_;
  std::unique_ptr<v1::DatasetService::Stub> datasets_;
};

std::string* ServiceTest::repository_ = nullptr;
Server* ServiceTest::server_ = nullptr;

TEST_P(ServiceTest, ReconstructAndForwardRoundTrip) {
  v1::ForwardRequest forward;
  forward.set_model("toy");
  *forward.mutable_signals() = Batch(50, 2);
  v1::ForwardResponse phi;
  grpc::ClientContext context;
  ASSERT_TRUE(reconstruction_->Forward(&context, forward, &phi).ok());
  EXPECT_EQ(phi.version(), 1);
  // The model works in normal-equation space: Reconstruct takes y and applies A^T itself, so
  // send y = A^-T phi(x) to get x back.
  const float a[2][2] = {{0.9f, 0.2f}, {0.1f, 0.5f}};
  const float det = a[0][0] * a[1][1] - a[0][1] * a[1][0];
  v1::ReconstructRequest request;
  request.set_model("toy");
  v1::Tensor* y = request.mutable_measurements();
  y->add_shape(50);
  y->add_shape(2);
  for (int i = 0; i < 50; ++i) {
    const float t0 = phi.outputs().values(2 * i), t1 = phi.outputs().values(2 * i + 1);
    // Solve A^T y = t.
    y->add_values((a[1][1] * t0 - a[1][0] * t1) / det);
    y->add_values((-a[0][1] * t0 + a[0][0] * t1) / det);
  }
  request.mutable_solver()->set_tolerance(1e-6);
  v1::ReconstructResponse response;
  ASSERT_TRUE(Reconstruct(request, &response).ok());
  ASSERT_EQ(response.reconstructions().values_size(), 100);
  ASSERT_EQ(response.iterations_size(), 50);
  for (int i = 0; i < 100; ++i) {
    EXPECT_NEAR(response.reconstructions().values(i), forward.signals().values(i), 2e-4);
  }
  for (int i = 0; i < 50; ++i) {
    EXPECT_TRUE(response.converged(i));
    EXPECT_GT(response.iterations(i), 0);
    EXPECT_LE(response.error_bound(i), 1e-5);
    EXPECT_LE(response.forward_residual(i), 1e-4);
  }
}

TEST_P(ServiceTest, EstimateReturnsTheReferences) {
  v1::EstimateRequest request;
  request.set_model("toy");
  *request.mutable_measurements() = Batch(7, 2);
  v1::EstimateResponse response;
  grpc::ClientContext context;
  ASSERT_TRUE(reconstruction_->Estimate(&context, request, &response).ok());
  EXPECT_EQ(response.posterior_mean().values_size(), 14);
  EXPECT_EQ(response.posterior_std().values_size(), 14);
  EXPECT_EQ(response.map().values_size(), 14);
  EXPECT_EQ(response.map_objective_size(), 7);
  EXPECT_EQ(response.wiener().values_size(), 14);
  EXPECT_EQ(response.pseudo_inverse().values_size(), 14);
  for (float s : response.posterior_std().values()) EXPECT_GT(s, 0.0f);
  request.add_estimators(v1::ESTIMATOR_MAP);
  grpc::ClientContext context2;
  v1::EstimateResponse only_map;
  ASSERT_TRUE(reconstruction_->Estimate(&context2, request, &only_map).ok());
  EXPECT_FALSE(only_map.has_posterior_mean());
  EXPECT_EQ(only_map.map().values_size(), 14);
}

TEST_P(ServiceTest, DrawTestPairsIsSeededAndValidated) {
  auto draw = [&](int64_t count, uint64_t seed, v1::DrawTestPairsResponse* response) {
    v1::DrawTestPairsRequest request;
    request.set_model("toy");
    request.set_count(count);
    request.set_seed(seed);
    grpc::ClientContext context;
    return reconstruction_->DrawTestPairs(&context, request, response);
  };
  v1::DrawTestPairsResponse a, b, c;
  ASSERT_TRUE(draw(500, 1, &a).ok());
  ASSERT_TRUE(draw(500, 1, &b).ok());
  ASSERT_TRUE(draw(500, 2, &c).ok());
  EXPECT_THAT(a.signals().shape(), ::testing::ElementsAre(500, 2));
  EXPECT_THAT(a.measurements().shape(), ::testing::ElementsAre(500, 2));
  EXPECT_EQ(a.signals().values(7), b.signals().values(7));
  EXPECT_NE(a.signals().values(7), c.signals().values(7));
  // The bimodal prior: first coordinates cluster around -1 and +1, y = A x + 0.2 eta.
  double mean_abs = 0, residual = 0;
  for (int i = 0; i < 500; ++i) {
    const float x0 = a.signals().values(2 * i), x1 = a.signals().values(2 * i + 1);
    mean_abs += std::abs(x0) / 500;
    residual += std::pow(a.measurements().values(2 * i) - (0.9f * x0 + 0.2f * x1), 2) / 500;
  }
  EXPECT_NEAR(mean_abs, 1.0, 0.1);
  EXPECT_NEAR(std::sqrt(residual), 0.2, 0.03);
  ExpectCode(draw(0, 1, &a), grpc::INVALID_ARGUMENT, "count");
  ExpectCode(draw(2000000, 1, &a), grpc::INVALID_ARGUMENT, "count");
}

TEST_P(ServiceTest, BadReconstructRequests) {
  v1::ReconstructRequest request;
  v1::ReconstructResponse response;
  auto fresh = [&] {
    request.Clear();
    request.set_model("toy");
    *request.mutable_measurements() = Batch(3, 2);
  };
  fresh();
  request.set_model("nope");
  ExpectCode(Reconstruct(request, &response), grpc::NOT_FOUND, "model 'nope' not found");
  fresh();
  request.set_model("../../etc/passwd");
  ExpectCode(Reconstruct(request, &response), grpc::INVALID_ARGUMENT, "model:");
  fresh();
  request.set_version(7);
  ExpectCode(Reconstruct(request, &response), grpc::NOT_FOUND, "no version 7");
  fresh();
  request.set_version(-1);
  ExpectCode(Reconstruct(request, &response), grpc::INVALID_ARGUMENT, "version");
  fresh();
  *request.mutable_measurements() = Batch(3, 5);
  ExpectCode(Reconstruct(request, &response), grpc::INVALID_ARGUMENT, "measurements: expected 2");
  fresh();
  *request.mutable_measurements() = Batch(0, 2);
  ExpectCode(Reconstruct(request, &response), grpc::INVALID_ARGUMENT, "empty batch");
  fresh();
  request.mutable_measurements()->add_shape(1);
  ExpectCode(Reconstruct(request, &response), grpc::INVALID_ARGUMENT, "rank 2");
  fresh();
  request.mutable_measurements()->add_values(1.0f);
  ExpectCode(Reconstruct(request, &response), grpc::INVALID_ARGUMENT, "values_size 7");
  fresh();
  request.mutable_measurements()->set_shape(0, -1);
  ExpectCode(Reconstruct(request, &response), grpc::INVALID_ARGUMENT, "negative");
  fresh();
  request.mutable_measurements()->set_values(2, std::nanf(""));
  ExpectCode(Reconstruct(request, &response), grpc::INVALID_ARGUMENT, "NaN");
  fresh();
  request.mutable_solver()->set_tolerance(0);
  ExpectCode(Reconstruct(request, &response), grpc::INVALID_ARGUMENT, "solver.tolerance");
  fresh();
  request.mutable_solver()->set_max_iterations(-5);
  ExpectCode(Reconstruct(request, &response), grpc::INVALID_ARGUMENT, "solver.max_iterations");
  fresh();
  request.mutable_measurements()->set_shape(0, int64_t{1} << 40);
  ExpectCode(Reconstruct(request, &response), grpc::RESOURCE_EXHAUSTED, "limit");
}

TEST_P(ServiceTest, MessagesOverTheLimitAreRefused) {
  v1::ReconstructRequest request;
  request.set_model("toy");
  *request.mutable_measurements() = Batch(1200000, 2);  // 9.6 MB > the 8 MiB limit
  v1::ReconstructResponse response;
  ExpectCode(Reconstruct(request, &response), grpc::RESOURCE_EXHAUSTED, "");
}

TEST_P(ServiceTest, ForwardAndEstimateValidateToo) {
  v1::ForwardRequest forward;
  forward.set_model("toy");
  *forward.mutable_signals() = Batch(2, 3);
  v1::ForwardResponse phi;
  grpc::ClientContext c1;
  ExpectCode(reconstruction_->Forward(&c1, forward, &phi), grpc::INVALID_ARGUMENT, "signals:");
  v1::EstimateRequest estimate;
  estimate.set_model("toy");
  *estimate.mutable_measurements() = Batch(2, 2);
  estimate.add_estimators(static_cast<v1::Estimator>(42));
  v1::EstimateResponse refs;
  grpc::ClientContext c2;
  ExpectCode(reconstruction_->Estimate(&c2, estimate, &refs), grpc::INVALID_ARGUMENT,
             "estimators");
}

TEST_P(ServiceTest, BadTrainRequests) {
  v1::TrainResponse response;
  auto train = [&](const v1::TrainRequest& request) {
    grpc::ClientContext context;
    return training_->Train(&context, request, &response);
  };
  v1::TrainRequest request = SmallTrainRequest("ok-name", v1::LOSS_APPROXIMATION);
  request.set_model_name("Bad Name");
  ExpectCode(train(request), grpc::INVALID_ARGUMENT, "model_name");
  request = SmallTrainRequest("m", v1::LOSS_UNSPECIFIED);
  ExpectCode(train(request), grpc::INVALID_ARGUMENT, "training.loss");
  request = SmallTrainRequest("m", v1::LOSS_APPROXIMATION);
  request.mutable_architecture()->set_lipschitz_coeff(1.0);
  ExpectCode(train(request), grpc::INVALID_ARGUMENT, "lipschitz_coeff");
  request = SmallTrainRequest("m", v1::LOSS_APPROXIMATION);
  request.mutable_training()->set_batch_size(0);
  ExpectCode(train(request), grpc::INVALID_ARGUMENT, "training.batch_size");
  request = SmallTrainRequest("m", v1::LOSS_APPROXIMATION);
  request.clear_preset();
  v1::Problem* problem = request.mutable_problem();
  problem->mutable_operator_()->mutable_identity()->set_dim(2);
  problem->set_noise_level(-0.1);
  problem->mutable_prior()->add_weights(0.6);
  problem->mutable_prior()->add_weights(0.6);
  *problem->mutable_prior()->mutable_means() = Batch(2, 2);
  v1::Tensor* cov = problem->mutable_prior()->mutable_covariances();
  for (int d : {2, 2, 2}) cov->add_shape(d);
  for (float v : {1, 0, 0, 1, 1, 0, 0, 1}) cov->add_values(v);
  ExpectCode(train(request), grpc::INVALID_ARGUMENT, "noise_level");
  problem->set_noise_level(0.1);
  ExpectCode(train(request), grpc::INVALID_ARGUMENT, "prior.weights");
  problem->mutable_prior()->set_weights(0, 0.4);
  cov->set_values(0, -1);  // not positive definite
  ExpectCode(train(request), grpc::INVALID_ARGUMENT, "prior.covariances");
  cov->set_values(0, 1);
  problem->set_dataset("no-such-dataset");
  ExpectCode(train(request), grpc::NOT_FOUND, "dataset 'no-such-dataset'");
  request = SmallTrainRequest("m", v1::LOSS_APPROXIMATION);
  request.mutable_training()->set_target_space(v1::TARGET_SPACE_MEASUREMENT);
  request.clear_preset();
  problem = request.mutable_problem();
  v1::Tensor* matrix = problem->mutable_operator_()->mutable_dense()->mutable_matrix();
  *matrix = Batch(3, 2);  // m = 3 != n = 2
  problem->set_noise_level(0.1);
  problem->mutable_prior()->add_weights(1.0);
  *problem->mutable_prior()->mutable_means() = Batch(1, 2);
  v1::Tensor* identity = problem->mutable_prior()->mutable_covariances();
  for (int d : {1, 2, 2}) identity->add_shape(d);
  for (float v : {1, 0, 0, 1}) identity->add_values(v);
  ExpectCode(train(request), grpc::INVALID_ARGUMENT, "target_space: 'measurement' needs a square");
}

TEST_P(ServiceTest, JobLifecycleAndLimits) {
  // Two long jobs fill the server; a third is refused at once.
  std::vector<std::string> ids;
  for (int i = 0; i < 2; ++i) {
    grpc::ClientContext context;
    v1::TrainResponse response;
    ASSERT_TRUE(training_
                    ->Train(&context,
                            SmallTrainRequest("long", v1::LOSS_APPROXIMATION, 1000000), &response)
                    .ok());
    ids.push_back(response.job().job_id());
  }
  {
    grpc::ClientContext context;
    v1::TrainResponse response;
    ExpectCode(training_->Train(&context, SmallTrainRequest("third", v1::LOSS_APPROXIMATION, 40),
                                &response),
               grpc::RESOURCE_EXHAUSTED, "maximum of 2");
  }
  // Serving goes on while they train.
  for (int i = 0; i < 20; ++i) ExpectStillServing();
  for (const std::string& id : ids) {
    grpc::ClientContext context;
    v1::CancelTrainingJobRequest request;
    request.set_job_id(id);
    v1::CancelTrainingJobResponse response;
    ASSERT_TRUE(training_->CancelTrainingJob(&context, request, &response).ok());
    v1::TrainingJob final_state = WaitForJob(*training_, id);
    EXPECT_EQ(final_state.state(), v1::JOB_STATE_CANCELLED);
    EXPECT_THAT(final_state.error(), HasSubstr("cancelled by request"));
  }
  // Cancelling a finished job is a precondition failure; unknown jobs are NOT_FOUND.
  {
    grpc::ClientContext context;
    v1::CancelTrainingJobRequest request;
    request.set_job_id(ids[0]);
    v1::CancelTrainingJobResponse response;
    ExpectCode(training_->CancelTrainingJob(&context, request, &response),
               grpc::FAILED_PRECONDITION, "already finished");
  }
  {
    grpc::ClientContext context;
    v1::GetTrainingJobRequest request;
    request.set_job_id("job-nope");
    v1::GetTrainingJobResponse response;
    ExpectCode(training_->GetTrainingJob(&context, request, &response), grpc::NOT_FOUND,
               "job-nope");
  }
  // Nothing was published for the cancelled jobs.
  grpc::ClientContext context;
  v1::GetModelRequest get;
  get.set_name("long");
  v1::GetModelResponse model;
  EXPECT_EQ(models_->GetModel(&context, get, &model).error_code(), grpc::NOT_FOUND);
  grpc::ClientContext list_context;
  v1::ListTrainingJobsResponse jobs;
  ASSERT_TRUE(training_->ListTrainingJobs(&list_context, {}, &jobs).ok());
  EXPECT_GE(jobs.jobs_size(), 3);
}

TEST_P(ServiceTest, WatchStreamsProgressToTheEnd) {
  // Version numbers are never reused, so each transport trains a model of its own.
  const std::string name = GetParam() == Transport::kTcp ? "watched-tcp" : "watched";
  grpc::ClientContext context;
  v1::TrainResponse started;
  ASSERT_TRUE(
      training_->Train(&context, SmallTrainRequest(name, v1::LOSS_LOG_DET, 150), &started).ok());
  grpc::ClientContext watch_context;
  v1::WatchTrainingJobRequest request;
  request.set_job_id(started.job().job_id());
  auto reader = training_->WatchTrainingJob(&watch_context, request);
  v1::WatchTrainingJobResponse update;
  int updates = 0;
  int64_t last_step = -1;
  v1::TrainingJob last;
  while (reader->Read(&update)) {
    EXPECT_GE(update.job().step(), last_step);
    last_step = update.job().step();
    last = update.job();
    ++updates;
  }
  ASSERT_TRUE(reader->Finish().ok());
  EXPECT_GE(updates, 2);
  EXPECT_EQ(last.state(), v1::JOB_STATE_SUCCEEDED) << last.error();
  EXPECT_EQ(last.step(), 150);
  EXPECT_EQ(last.published_version(), 1);
  EXPECT_GT(last.last_validation().mse(), 0.0);
  // A second training of the same name publishes version 2.
  grpc::ClientContext again;
  ASSERT_TRUE(
      training_->Train(&again, SmallTrainRequest(name, v1::LOSS_LOG_DET, 20), &started).ok());
  EXPECT_EQ(WaitForJob(*training_, started.job().job_id()).published_version(), 2);
  grpc::ClientContext get_context;
  v1::GetModelRequest get;
  get.set_name(name);
  v1::GetModelResponse model;
  ASSERT_TRUE(models_->GetModel(&get_context, get, &model).ok());
  ASSERT_EQ(model.model().versions_size(), 2);
  const v1::ModelVersion& v = model.model().versions(1);
  EXPECT_EQ(v.version(), 2);
  EXPECT_EQ(v.training().loss(), v1::LOSS_LOG_DET);
  EXPECT_EQ(v.training().steps(), 20);
  EXPECT_DOUBLE_EQ(v.training().loss_weight(), 0.04);  // delta^2 resolved
  EXPECT_EQ(v.architecture().hidden_width(), 16);
  EXPECT_EQ(v.block_lipschitz_size(), 2);
  for (double l : v.block_lipschitz()) EXPECT_LT(l, 1.0);
  EXPECT_EQ(v.job_id(), started.job().job_id());
  EXPECT_GT(v.metrics().at("val_mse"), 0.0);
  EXPECT_TRUE(v.problem().has_prior());
  std::map<std::string, int> curve_sizes;
  for (const v1::Curve& curve : v.curves()) curve_sizes[curve.name()] = curve.values_size();
  EXPECT_GT(curve_sizes["loss"], 0);
  EXPECT_EQ(curve_sizes["loss"], curve_sizes["step"]);
  EXPECT_EQ(curve_sizes["val_mse"], 1);  // validation_every = 0: only the final one
  // Delete version 1, then the model.
  grpc::ClientContext d1;
  v1::DeleteModelRequest del;
  del.set_name(name);
  del.set_version(1);
  v1::DeleteModelResponse deleted;
  ASSERT_TRUE(models_->DeleteModel(&d1, del, &deleted).ok());
  grpc::ClientContext d2;
  ExpectCode(models_->DeleteModel(&d2, del, &deleted), grpc::NOT_FOUND, "no version 1");
  del.set_version(0);
  grpc::ClientContext d3a;
  ExpectCode(models_->DeleteModel(&d3a, del, &deleted), grpc::INVALID_ARGUMENT, "all_versions");
  del.set_all_versions(true);
  grpc::ClientContext d3;
  ASSERT_TRUE(models_->DeleteModel(&d3, del, &deleted).ok());
  grpc::ClientContext d4;
  ExpectCode(models_->GetModel(&d4, get, &model), grpc::NOT_FOUND, name);
}

TEST_P(ServiceTest, DatasetsUploadTrainAndRefuseBadStreams) {
  const std::string name = GetParam() == Transport::kTcp ? "ds-tcp" : "ds-inproc";
  auto upload = [&](const std::vector<v1::UploadDatasetRequest>& messages,
                    v1::UploadDatasetResponse* response) {
    grpc::ClientContext context;
    auto writer = datasets_->UploadDataset(&context, response);
    for (const auto& m : messages) writer->Write(m);
    writer->WritesDone();
    return writer->Finish();
  };
  v1::UploadDatasetRequest header;
  header.mutable_header()->set_name(name);
  header.mutable_header()->set_dim(2);
  header.mutable_header()->set_num_samples(300);
  v1::UploadDatasetRequest chunk;
  *chunk.mutable_chunk() = Batch(100, 2, 1.5f);
  v1::UploadDatasetResponse response;
  ASSERT_TRUE(upload({header, chunk, chunk, chunk}, &response).ok());
  EXPECT_EQ(response.dataset().num_samples(), 300);
  ExpectCode(upload({header, chunk, chunk, chunk}, &response), grpc::ALREADY_EXISTS, name);
  v1::UploadDatasetRequest other = header;
  other.mutable_header()->set_name(name + "-2");
  ExpectCode(upload({other, chunk}, &response), grpc::INVALID_ARGUMENT, "received 100 samples");
  ExpectCode(upload({other, chunk, chunk, chunk, chunk}, &response), grpc::INVALID_ARGUMENT,
             "more samples");
  ExpectCode(upload({chunk}, &response), grpc::INVALID_ARGUMENT, "header");
  ExpectCode(upload({other, other}, &response), grpc::INVALID_ARGUMENT,
             "message 1 must be a chunk");
  v1::UploadDatasetRequest bad_chunk;
  *bad_chunk.mutable_chunk() = Batch(10, 3);
  ExpectCode(upload({other, bad_chunk}, &response), grpc::INVALID_ARGUMENT, "chunk 0");
  v1::UploadDatasetRequest huge = other;
  huge.mutable_header()->set_num_samples(1 << 20);
  ExpectCode(upload({huge}, &response), grpc::RESOURCE_EXHAUSTED, "dataset limit");
  v1::UploadDatasetRequest bad_name = other;
  bad_name.mutable_header()->set_name("../x");
  ExpectCode(upload({bad_name}, &response), grpc::INVALID_ARGUMENT, "header.name");
  // A failed upload leaves nothing behind.
  grpc::ClientContext list_context;
  v1::ListDatasetsResponse list;
  ASSERT_TRUE(datasets_->ListDatasets(&list_context, {}, &list).ok());
  for (const auto& d : list.datasets()) EXPECT_NE(d.name(), name + "-2");

  // Train on the dataset; its model has no exact references.
  v1::TrainRequest train = SmallTrainRequest(name + "-model", v1::LOSS_APPROXIMATION, 20);
  train.clear_preset();
  v1::Problem* problem = train.mutable_problem();
  problem->mutable_operator_()->mutable_identity()->set_dim(2);
  problem->set_noise_level(0.1);
  problem->set_dataset(name);
  grpc::ClientContext train_context;
  v1::TrainResponse started;
  ASSERT_TRUE(training_->Train(&train_context, train, &started).ok());
  EXPECT_EQ(WaitForJob(*training_, started.job().job_id()).state(), v1::JOB_STATE_SUCCEEDED);
  // Test pairs come from the held-out tail of the dataset: 300 samples keep the last 60
  // (min(validation_size = 100, 300 / 5)), i.e. rows 40..99 of the (thrice uploaded) chunk.
  v1::DrawTestPairsRequest draw;
  draw.set_model(name + "-model");
  draw.set_count(50);
  v1::DrawTestPairsResponse pairs;
  grpc::ClientContext draw_context;
  ASSERT_TRUE(reconstruction_->DrawTestPairs(&draw_context, draw, &pairs).ok());
  for (int i = 0; i < 50; ++i) {
    bool found = false;
    for (int row = 40; row < 100 && !found; ++row) {
      found = pairs.signals().values(2 * i) == chunk.chunk().values(2 * row) &&
              pairs.signals().values(2 * i + 1) == chunk.chunk().values(2 * row + 1);
    }
    EXPECT_TRUE(found) << "pair " << i << " is not from the held-out tail";
  }
  v1::EstimateRequest estimate;
  estimate.set_model(name + "-model");
  *estimate.mutable_measurements() = Batch(2, 2);
  v1::EstimateResponse refs;
  grpc::ClientContext estimate_context;
  ExpectCode(reconstruction_->Estimate(&estimate_context, estimate, &refs),
             grpc::FAILED_PRECONDITION, "trained on a dataset");
  grpc::ClientContext delete_context;
  v1::DeleteDatasetRequest del;
  del.set_name(name);
  v1::DeleteDatasetResponse deleted;
  ASSERT_TRUE(datasets_->DeleteDataset(&delete_context, del, &deleted).ok());
  grpc::ClientContext again;
  ExpectCode(datasets_->DeleteDataset(&again, del, &deleted), grpc::NOT_FOUND, name);
}

TEST_P(ServiceTest, ReconstructHonoursTheDeadline) {
  // 200,000 samples through 4 blocks of width 512 with a tolerance that cannot be met take many
  // seconds; the deadline stops the solve.
  v1::ReconstructRequest request;
  request.set_model("wide");
  *request.mutable_measurements() = Batch(200000, 2, 3.0f);
  request.mutable_solver()->set_tolerance(1e-30);
  request.mutable_solver()->set_max_iterations(1000000);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(300));
  v1::ReconstructResponse response;
  const auto start = std::chrono::steady_clock::now();
  grpc::Status status = reconstruction_->Reconstruct(&context, request, &response);
  EXPECT_EQ(status.error_code(), grpc::DEADLINE_EXCEEDED) << status.error_message();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(3));
  ExpectStillServing();
}

INSTANTIATE_TEST_SUITE_P(Transports, ServiceTest,
                         ::testing::Values(Transport::kInProcess, Transport::kTcp),
                         [](const auto& info) {
                           return info.param == Transport::kTcp ? "Tcp" : "InProcess";
                         });

}  // namespace
}  // namespace invnet::server
