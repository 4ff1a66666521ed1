// The four services end to end through gRPC, in process and over TCP on port 0: every RPC's
// success path and every class of bad input, with the exact status code, and the server keeps
// serving after each.

#include <cmath>
#include <thread>

#include <condition_variable>
#include <mutex>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "invnet/v1/dataset_service.grpc.pb.h"
#include "invnet/v1/model_service.grpc.pb.h"
#include "invnet/v1/reconstruction_service.grpc.pb.h"
#include "invnet/v1/training_service.grpc.pb.h"
#include "models/presets.h"
#include "models/priors.h"
#include "models/seeds.h"
#include "models/trainer.h"
#include "server/server.h"
#include "tests/testing/scratch_directory.h"
#include "tests/testing/test_server.h"
#include "tests/testing/train_requests.h"

namespace invnet::server {
namespace {

using ::testing::HasSubstr;
using ::invnet::testing::SmallTrainRequest;

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
    ServerOptions options;
    options.max_concurrent_jobs = 2;
    options.max_queued_jobs = 1;
    options.max_dataset_bytes = 1 << 20;
    options.max_message_bytes = 8 << 20;
    server_ = invnet::testing::TestServer::Start(options).release();
    ASSERT_NE(server_, nullptr);
    // One trained model for the serving tests.
    ASSERT_EQ(server_->TrainAndWait(SmallTrainRequest("toy", v1::LOSS_DIVERGENCE, 40)).state(),
              v1::JOB_STATE_SUCCEEDED);
    // A wide model whose inverse is expensive, for the deadline test.
    v1::TrainRequest wide = SmallTrainRequest("wide", v1::LOSS_APPROXIMATION, 2);
    wide.mutable_architecture()->set_hidden_width(512);
    wide.mutable_architecture()->set_num_blocks(4);
    ASSERT_EQ(server_->TrainAndWait(wide).state(), v1::JOB_STATE_SUCCEEDED);
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }

  grpc::Status CancelJob(const std::string& id, v1::CancelTrainingJobResponse* response) {
    grpc::ClientContext context;
    v1::CancelTrainingJobRequest request;
    request.set_job_id(id);
    return training_->CancelTrainingJob(&context, request, response);
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

  static invnet::testing::TestServer* server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::ReconstructionService::Stub> reconstruction_;
  std::unique_ptr<v1::TrainingService::Stub> training_;
  std::unique_ptr<v1::ModelService::Stub> models_;
  std::unique_ptr<v1::DatasetService::Stub> datasets_;
};

invnet::testing::TestServer* ServiceTest::server_ = nullptr;

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

TEST_P(ServiceTest, ReconstructReturnsTheNetworksPosteriorStdWhenAsked) {
  v1::ReconstructRequest request;
  request.set_model("toy");  // divergence, normal space
  *request.mutable_measurements() = Batch(20, 2);
  v1::ReconstructResponse plain;
  ASSERT_TRUE(Reconstruct(request, &plain).ok());
  EXPECT_FALSE(plain.has_posterior_std());
  EXPECT_EQ(plain.posterior_std_method(), "");
  request.set_posterior_std(true);
  v1::ReconstructResponse response;
  grpc::Status status = Reconstruct(request, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response.posterior_std_method(), "laplace-divergence");
  ASSERT_EQ(response.posterior_std().shape_size(), 2);
  EXPECT_EQ(response.posterior_std().shape(0), 20);
  EXPECT_EQ(response.posterior_std().shape(1), 2);
  ASSERT_EQ(response.reconstructions().values_size(), plain.reconstructions().values_size());
  for (int i = 0; i < plain.reconstructions().values_size(); ++i) {
    EXPECT_EQ(response.reconstructions().values(i), plain.reconstructions().values(i));
  }
  // The exact posterior std of the same measurements: a network trained for 40 steps is no
  // accurate curvature model, but it is of the right scale (a lost delta, or delta^2 for
  // delta, would be off by 5x or more).
  v1::EstimateRequest estimate;
  estimate.set_model("toy");
  *estimate.mutable_measurements() = request.measurements();
  estimate.add_estimators(v1::ESTIMATOR_POSTERIOR_STD);
  v1::EstimateResponse exact;
  grpc::ClientContext context;
  ASSERT_TRUE(reconstruction_->Estimate(&context, estimate, &exact).ok());
  ASSERT_EQ(exact.posterior_std().values_size(), 40);
  for (int i = 0; i < 40; ++i) {
    const float s = response.posterior_std().values(i);
    ASSERT_TRUE(std::isfinite(s)) << i;
    EXPECT_GT(s / exact.posterior_std().values(i), 0.4) << i;
    EXPECT_LT(s / exact.posterior_std().values(i), 2.5) << i;
  }
}

TEST_P(ServiceTest, PosteriorStdOfALogDetModelInMeasurementSpaceIsTweedies) {
  const std::string name = GetParam() == Transport::kTcp ? "spread-logdet-tcp" : "spread-logdet";
  v1::TrainRequest train = SmallTrainRequest(name, v1::LOSS_LOG_DET, 40);
  train.mutable_training()->set_target_space(v1::TARGET_SPACE_MEASUREMENT);
  grpc::ClientContext context;
  v1::TrainResponse started;
  ASSERT_TRUE(training_->Train(&context, train, &started).ok());
  ASSERT_EQ(server_->WaitForJob(started.job().job_id()).state(), v1::JOB_STATE_SUCCEEDED);
  v1::ReconstructRequest request;
  request.set_model(name);
  request.set_posterior_std(true);
  *request.mutable_measurements() = Batch(5, 2);
  v1::ReconstructResponse response;
  grpc::Status status = Reconstruct(request, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response.posterior_std_method(), "tweedie-log-det");
  ASSERT_EQ(response.posterior_std().values_size(), 10);
  for (float s : response.posterior_std().values()) EXPECT_GT(s, 0.0f);
}

TEST_P(ServiceTest, PosteriorStdIsRefusedWhereNoTheoryDefinesIt) {
  // Approximation training: no regulariser ties J_phi to the posterior.
  v1::ReconstructRequest request;
  request.set_model("wide");
  request.set_posterior_std(true);
  *request.mutable_measurements() = Batch(2, 2);
  v1::ReconstructResponse response;
  ExpectCode(Reconstruct(request, &response), grpc::StatusCode::FAILED_PRECONDITION,
             "loss 'approximation' in target space 'measurement'");
  // Log-det in normal space: no Tweedie identity there.
  const std::string name = GetParam() == Transport::kTcp ? "spread-normal-tcp" : "spread-normal";
  v1::TrainRequest train = SmallTrainRequest(name, v1::LOSS_LOG_DET, 5);
  train.mutable_training()->set_target_space(v1::TARGET_SPACE_NORMAL);
  grpc::ClientContext context;
  v1::TrainResponse started;
  // (Should training come to refuse this combination, there is nothing to serve.)
  if (training_->Train(&context, train, &started).ok()) {
    ASSERT_EQ(server_->WaitForJob(started.job().job_id()).state(), v1::JOB_STATE_SUCCEEDED);
    request.set_model(name);
    ExpectCode(Reconstruct(request, &response), grpc::StatusCode::FAILED_PRECONDITION,
               "loss 'logdet' in target space 'normal'");
  }
  // Where the std is defined, the measurements are still validated.
  request.set_model("toy");
  request.mutable_measurements()->set_values(0, std::nanf(""));
  ExpectCode(Reconstruct(request, &response), grpc::StatusCode::INVALID_ARGUMENT,
             "measurements");
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
  // The MAP search converged: the objective's gradient vanishes at every answer (to the
  // float64 round-off of a problem whose terms are of order 1).
  ASSERT_EQ(response.map_gradient_norm_size(), 7);
  for (double g : response.map_gradient_norm()) {
    EXPECT_GE(g, 0.0);
    EXPECT_LT(g, 1e-6);
  }
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
  // The test stream of seed 1, not the draws of a model trained with seed 1 (whose first batch
  // takes the prior's first samples from a generator seeded 1).
  auto prior = GaussianMixture::Create(
                   *GetPreset("bimodal2d", LossKind::kDivergence)->problem.prior).value();
  const at::Tensor training_draw =
      prior->Sample(500, at::make_generator<at::CPUGeneratorImpl>(uint64_t{1})).to(at::kFloat);
  const at::Tensor test_draw =
      prior->Sample(500, at::make_generator<at::CPUGeneratorImpl>(
                             StreamSeed(1, SeedStream::kTest))).to(at::kFloat);
  EXPECT_NE(a.signals().values(0), training_draw[0][0].item<float>());
  EXPECT_EQ(a.signals().values(0), test_draw[0][0].item<float>());
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
  // Two long jobs fill the workers; a third waits QUEUED and a fourth is refused at once.
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
  std::string queued_id;
  {
    grpc::ClientContext context;
    v1::TrainResponse response;
    ASSERT_TRUE(training_
                    ->Train(&context, SmallTrainRequest("third", v1::LOSS_APPROXIMATION, 40),
                            &response)
                    .ok());
    EXPECT_EQ(response.job().state(), v1::JOB_STATE_QUEUED);
    queued_id = response.job().job_id();
  }
  {
    grpc::ClientContext context;
    v1::TrainResponse response;
    ExpectCode(training_->Train(&context, SmallTrainRequest("fourth", v1::LOSS_APPROXIMATION, 40),
                                &response),
               grpc::RESOURCE_EXHAUSTED, "--max_queued_jobs");
  }
  {
    // Cancelling a queued job ends it at once; it never trains.
    v1::CancelTrainingJobResponse response;
    ASSERT_TRUE(CancelJob(queued_id, &response).ok());
    EXPECT_EQ(response.job().state(), v1::JOB_STATE_CANCELLED);
    EXPECT_THAT(response.job().error(), HasSubstr("while the job was queued"));
    EXPECT_EQ(response.job().step(), 0);
  }
  // Serving goes on while they train.
  for (int i = 0; i < 20; ++i) ExpectStillServing();
  for (const std::string& id : ids) {
    v1::CancelTrainingJobResponse response;
    ASSERT_TRUE(CancelJob(id, &response).ok());
    v1::TrainingJob final_state = server_->WaitForJob(id);
    EXPECT_EQ(final_state.state(), v1::JOB_STATE_CANCELLED);
    EXPECT_THAT(final_state.error(), HasSubstr("cancelled by request"));
  }
  // Cancelling a finished job is a precondition failure; unknown jobs are NOT_FOUND.
  {
    v1::CancelTrainingJobResponse response;
    ExpectCode(CancelJob(ids[0], &response), grpc::FAILED_PRECONDITION, "already finished");
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

// Unsupported loss/target-space combinations train with a warning in the job record and the
// published model; a supported one carries none; a defaulted target space says why.
TEST_P(ServiceTest, UnsupportedCombinationsTrainWithAWarning) {
  struct Case {
    std::string model;
    v1::Loss loss;
    v1::TargetSpace space;
    std::string warning;  // empty: none expected
    std::string reason;
  };
  const std::vector<Case> cases = {
      {"warn-logdet-normal", v1::LOSS_LOG_DET, v1::TARGET_SPACE_NORMAL,
       "log-det loss in normal space", ""},
      {"warn-div-measurement", v1::LOSS_DIVERGENCE, v1::TARGET_SPACE_MEASUREMENT,
       "divergence loss in measurement space with A != I", ""},
      {"warn-none", v1::LOSS_LOG_DET, v1::TARGET_SPACE_UNSPECIFIED, "",
       "default for a square operator"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.model);
    v1::TrainRequest request = SmallTrainRequest(c.model, c.loss, 2);
    request.mutable_training()->set_target_space(c.space);
    grpc::ClientContext context;
    v1::TrainResponse response;
    ASSERT_TRUE(training_->Train(&context, request, &response).ok());
    EXPECT_EQ(response.job().target_space_reason(), c.reason);
    v1::TrainingJob done = server_->WaitForJob(response.job().job_id());
    ASSERT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED) << done.error();
    grpc::ClientContext get_context;
    v1::GetModelRequest get;
    get.set_name(c.model);
    v1::GetModelResponse model;
    ASSERT_TRUE(models_->GetModel(&get_context, get, &model).ok());
    ASSERT_EQ(model.model().versions_size(), 1);
    const auto& version_warnings = model.model().versions(0).warnings();
    if (c.warning.empty()) {
      EXPECT_TRUE(done.warnings().empty()) << done.warnings(0);
      EXPECT_TRUE(version_warnings.empty());
    } else {
      ASSERT_EQ(done.warnings_size(), 1);
      EXPECT_THAT(done.warnings(0), HasSubstr(c.warning));
      ASSERT_EQ(version_warnings.size(), 1);
      EXPECT_EQ(version_warnings[0], done.warnings(0));
    }
    grpc::ClientContext delete_context;
    v1::DeleteModelRequest del;
    del.set_name(c.model);
    del.set_all_versions(true);
    v1::DeleteModelResponse deleted;
    EXPECT_TRUE(models_->DeleteModel(&delete_context, del, &deleted).ok());
  }
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
  EXPECT_EQ(server_->WaitForJob(started.job().job_id()).published_version(), 2);
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
  v1::UploadDatasetRequest chunk, chunk2, chunk3;  // three different chunks of 100 samples
  *chunk.mutable_chunk() = Batch(100, 2, 1.5f);
  *chunk2.mutable_chunk() = Batch(100, 2, 1.6f);
  *chunk3.mutable_chunk() = Batch(100, 2, 1.7f);
  v1::UploadDatasetResponse response;
  ASSERT_TRUE(upload({header, chunk, chunk2, chunk3}, &response).ok());
  EXPECT_EQ(response.dataset().num_samples(), 300);
  ExpectCode(upload({header, chunk, chunk2, chunk3}, &response), grpc::ALREADY_EXISTS, name);
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
  EXPECT_EQ(server_->WaitForJob(started.job().job_id()).state(), v1::JOB_STATE_SUCCEEDED);
  // Test pairs come from the samples the trainer held out: 60 of the 300
  // (min(validation_size = 100, 300 / 5)), chosen by a seeded permutation (SplitDataset), not
  // the file's tail.
  std::vector<float> uploaded;
  for (const auto* c : {&chunk, &chunk2, &chunk3}) {
    uploaded.insert(uploaded.end(), c->chunk().values().begin(), c->chunk().values().end());
  }
  TrainingSpec spec;
  spec.validation_size = train.training().validation_size();
  ASSERT_EQ(spec.validation_size, 100);
  at::Tensor all = at::from_blob(uploaded.data(), {300, 2}, at::kFloat).to(at::kDouble);
  auto split = SplitDataset(all, spec);
  ASSERT_TRUE(split.ok()) << split.status();
  const at::Tensor held = split->second.to(at::kFloat).contiguous();
  ASSERT_EQ(held.size(0), 60);
  v1::DrawTestPairsRequest draw;
  draw.set_model(name + "-model");
  draw.set_count(50);
  v1::DrawTestPairsResponse pairs;
  grpc::ClientContext draw_context;
  ASSERT_TRUE(reconstruction_->DrawTestPairs(&draw_context, draw, &pairs).ok());
  int from_tail = 0;
  for (int i = 0; i < 50; ++i) {
    const float a = pairs.signals().values(2 * i), b = pairs.signals().values(2 * i + 1);
    bool found = false;
    for (int row = 0; row < 60 && !found; ++row) {
      found = a == held[row][0].item<float>() && b == held[row][1].item<float>();
    }
    EXPECT_TRUE(found) << "pair " << i << " is not from the held-out samples";
    for (int row = 240; row < 300; ++row) {
      from_tail += a == uploaded[2 * row] && b == uploaded[2 * row + 1];
    }
  }
  EXPECT_LT(from_tail, 50) << "every pair came from the file's tail";
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

// An explicit problem: identity (or `matrix`) operator on n = 2, one Gaussian component.
v1::TrainRequest PriorTrainRequest(const std::string& name, double mean, double variance) {
  v1::TrainRequest request = SmallTrainRequest(name, v1::LOSS_APPROXIMATION, 20);
  request.clear_preset();
  v1::Problem* problem = request.mutable_problem();
  problem->mutable_operator_()->mutable_identity()->set_dim(2);
  problem->set_noise_level(0.1);
  problem->mutable_prior()->add_weights(1.0);
  v1::Tensor* means = problem->mutable_prior()->mutable_means();
  means->add_shape(1);
  means->add_shape(2);
  means->add_values(mean);
  means->add_values(-mean);
  v1::Tensor* cov = problem->mutable_prior()->mutable_covariances();
  for (int d : {1, 2, 2}) cov->add_shape(d);
  for (double v : {variance, 0.0, 0.0, variance}) cov->add_values(v);
  return request;
}

// Issue 19, item 5: a client's value in an error message is cut to a bounded length, so a huge
// id comes back as INVALID_ARGUMENT with a short message, never as RESOURCE_EXHAUSTED
// ("initial metadata size exceeds limit") with the id inside.
TEST_P(ServiceTest, HugeIdsAndNamesAreRefusedWithShortMessages) {
  const std::string huge(20000, 'j');
  constexpr size_t kShort = 400;
  auto expect_short = [&](const grpc::Status& status, const std::string& field) {
    EXPECT_EQ(status.error_code(), grpc::INVALID_ARGUMENT) << status.error_message().substr(0, 200);
    EXPECT_THAT(status.error_message(), HasSubstr(field));
    EXPECT_THAT(status.error_message(), HasSubstr("(20000 bytes)"));
    EXPECT_LT(status.error_message().size(), kShort);
    ExpectStillServing();
  };
  {
    grpc::ClientContext context;
    v1::GetTrainingJobRequest request;
    request.set_job_id(huge);
    v1::GetTrainingJobResponse response;
    expect_short(training_->GetTrainingJob(&context, request, &response), "job_id");
  }
  {
    grpc::ClientContext context;
    v1::CancelTrainingJobRequest request;
    request.set_job_id(huge);
    v1::CancelTrainingJobResponse response;
    expect_short(training_->CancelTrainingJob(&context, request, &response), "job_id");
  }
  {
    grpc::ClientContext context;
    v1::WatchTrainingJobRequest request;
    request.set_job_id(huge);
    auto reader = training_->WatchTrainingJob(&context, request);
    v1::WatchTrainingJobResponse update;
    EXPECT_FALSE(reader->Read(&update));
    expect_short(reader->Finish(), "job_id");
  }
  {
    // A job id that is well formed but unknown is still NOT_FOUND.
    grpc::ClientContext context;
    v1::GetTrainingJobRequest request;
    request.set_job_id("job-20260101-000000-00000000");
    v1::GetTrainingJobResponse response;
    ExpectCode(training_->GetTrainingJob(&context, request, &response), grpc::NOT_FOUND,
               "job-20260101-000000-00000000");
  }
  v1::TrainResponse started;
  {
    grpc::ClientContext context;
    v1::TrainRequest request = SmallTrainRequest("m", v1::LOSS_APPROXIMATION);
    request.set_preset(std::string(1 << 20, 'p'));
    grpc::Status status = training_->Train(&context, request, &started);
    EXPECT_EQ(status.error_code(), grpc::INVALID_ARGUMENT);
    EXPECT_THAT(status.error_message(), HasSubstr("preset"));
    EXPECT_THAT(status.error_message(), HasSubstr("(1048576 bytes)"));
    EXPECT_LT(status.error_message().size(), kShort);
  }
  {
    grpc::ClientContext context;
    v1::TrainRequest request = PriorTrainRequest("m", 0.0, 1.0);
    request.mutable_problem()->set_dataset(huge);
    expect_short(training_->Train(&context, request, &started), "dataset");
  }
  {
    grpc::ClientContext context;
    v1::DeleteDatasetRequest request;
    request.set_name(huge);
    v1::DeleteDatasetResponse response;
    expect_short(datasets_->DeleteDataset(&context, request, &response), "dataset");
  }
  {
    grpc::ClientContext context;
    v1::GetModelRequest request;
    request.set_name(huge);
    v1::GetModelResponse response;
    expect_short(models_->GetModel(&context, request, &response), "name");
  }
  {
    grpc::ClientContext context;
    v1::ReconstructRequest request;
    request.set_model(huge);
    *request.mutable_measurements() = Batch(1, 2);
    v1::ReconstructResponse response;
    expect_short(reconstruction_->Reconstruct(&context, request, &response), "model");
  }
}

// Issue 19, item 6: a model pins the exact dataset it was trained on; DrawTestPairs refuses
// with FAILED_PRECONDITION once the dataset was replaced (other dimension, or same dimension
// and other values) and serves again when the original is back.
TEST_P(ServiceTest, DrawTestPairsRefusesAReplacedDataset) {
  const std::string name = GetParam() == Transport::kTcp ? "pin-tcp" : "pin-inproc";
  auto upload = [&](int64_t dim, float scale) {
    grpc::ClientContext context;
    v1::UploadDatasetResponse response;
    auto writer = datasets_->UploadDataset(&context, &response);
    v1::UploadDatasetRequest header;
    header.mutable_header()->set_name(name);
    header.mutable_header()->set_dim(dim);
    header.mutable_header()->set_num_samples(100);
    v1::UploadDatasetRequest chunk;
    *chunk.mutable_chunk() = Batch(100, dim, scale);
    writer->Write(header);
    writer->Write(chunk);
    writer->WritesDone();
    return writer->Finish();
  };
  auto remove = [&] {
    grpc::ClientContext context;
    v1::DeleteDatasetRequest request;
    request.set_name(name);
    v1::DeleteDatasetResponse response;
    return datasets_->DeleteDataset(&context, request, &response);
  };
  auto draw = [&] {
    grpc::ClientContext context;
    v1::DrawTestPairsRequest request;
    request.set_model(name + "-model");
    request.set_count(5);
    v1::DrawTestPairsResponse response;
    return reconstruction_->DrawTestPairs(&context, request, &response);
  };
  auto evaluate = [&](v1::EvaluateResponse* response) {
    grpc::ClientContext context;
    v1::EvaluateRequest request;
    request.add_models()->set_model(name + "-model");
    request.set_count(20);
    return reconstruction_->Evaluate(&context, request, response);
  };
  ASSERT_TRUE(upload(2, 1.5f).ok());
  v1::TrainRequest train = SmallTrainRequest(name + "-model", v1::LOSS_APPROXIMATION, 10);
  train.clear_preset();
  train.mutable_problem()->mutable_operator_()->mutable_identity()->set_dim(2);
  train.mutable_problem()->set_noise_level(0.1);
  train.mutable_problem()->set_dataset(name);
  grpc::ClientContext train_context;
  v1::TrainResponse started;
  ASSERT_TRUE(training_->Train(&train_context, train, &started).ok());
  ASSERT_EQ(server_->WaitForJob(started.job().job_id()).state(), v1::JOB_STATE_SUCCEEDED);
  ASSERT_TRUE(draw().ok());
  // Evaluate scores it on the same held-out samples; a dataset has no exact references.
  v1::EvaluateResponse scores;
  ASSERT_TRUE(evaluate(&scores).ok());
  EXPECT_EQ(scores.references_size(), 0);
  EXPECT_THAT(scores.references_unavailable(), HasSubstr("trained on a dataset"));
  ASSERT_EQ(scores.models_size(), 1);
  EXPECT_GT(scores.models(0).mse(), 0);
  EXPECT_TRUE(std::isnan(scores.models(0).mse_ratio_to_pm()));
  EXPECT_GT(scores.models(0).forward_error(), 0);

  ASSERT_TRUE(remove().ok());
  ExpectCode(draw(), grpc::FAILED_PRECONDITION, "'" + name + "'");
  ExpectCode(evaluate(&scores), grpc::FAILED_PRECONDITION, "'" + name + "'");
  ASSERT_TRUE(upload(3, 1.5f).ok());  // other dimension: was INTERNAL "mat1 and mat2 shapes"
  ExpectCode(draw(), grpc::FAILED_PRECONDITION, "dataset '" + name + "' has changed");
  ASSERT_TRUE(remove().ok());
  ASSERT_TRUE(upload(2, 0.7f).ok());  // same shape, other values: was served silently
  ExpectCode(draw(), grpc::FAILED_PRECONDITION, "other values");
  ASSERT_TRUE(remove().ok());
  ASSERT_TRUE(upload(2, 1.5f).ok());  // the original again
  grpc::Status status = draw();
  EXPECT_TRUE(status.ok()) << status.error_message();
  ASSERT_TRUE(remove().ok());
}

// Issue 19, item 7: magnitudes that would fail later (INTERNAL cholesky, "loss is inf") or give
// garbage (learning rate 1e10 "converged") are refused at Train, naming the field.
TEST_P(ServiceTest, TrainRefusesMagnitudesThatCannotTrain) {
  v1::TrainResponse response;
  auto train = [&](const v1::TrainRequest& request) {
    grpc::ClientContext context;
    return training_->Train(&context, request, &response);
  };
  ExpectCode(train(PriorTrainRequest("mag", 1e30, 1.0)), grpc::INVALID_ARGUMENT, "prior.means");
  ExpectCode(train(PriorTrainRequest("mag", 0.0, 1e30)), grpc::INVALID_ARGUMENT,
             "prior.covariances");
  v1::TrainRequest request = PriorTrainRequest("mag", 0.0, 1.0);
  request.mutable_problem()->set_noise_level(1e300);
  ExpectCode(train(request), grpc::INVALID_ARGUMENT, "problem.noise_level");
  request = PriorTrainRequest("mag", 0.0, 1.0);
  request.mutable_training()->set_loss_weight(1e300);
  ExpectCode(train(request), grpc::INVALID_ARGUMENT, "training.loss_weight");
  request = PriorTrainRequest("mag", 0.0, 1.0);
  request.mutable_training()->set_learning_rate(1e10);
  ExpectCode(train(request), grpc::INVALID_ARGUMENT,
             "training.learning_rate: 10000000000 must be in (0, 1]");
  request = PriorTrainRequest("mag", 0.0, 1.0);
  v1::Tensor* matrix =
      request.mutable_problem()->mutable_operator_()->mutable_dense()->mutable_matrix();
  *matrix = Batch(2, 2);
  matrix->set_values(0, 1e30f);
  ExpectCode(train(request), grpc::INVALID_ARGUMENT, "operator.dense.matrix");
  // Each value within its limit, their product not: measurements up to ~1e11.
  request = PriorTrainRequest("mag", 1e5, 1.0);
  matrix = request.mutable_problem()->mutable_operator_()->mutable_dense()->mutable_matrix();
  *matrix = Batch(2, 2);
  for (int i = 0; i < 4; ++i) matrix->set_values(i, 1e5f);
  ExpectCode(train(request), grpc::INVALID_ARGUMENT, "problem: measurements");
  // Variances 1 and 1e-14: the condition number 1e14 is over the limit.
  request = PriorTrainRequest("mag", 0.0, 1.0);
  request.mutable_problem()->mutable_prior()->mutable_covariances()->set_values(3, 1e-14);
  ExpectCode(train(request), grpc::INVALID_ARGUMENT, "prior.covariances[0]: condition number");
  // Values at the limits still train, and the exact references stay sane (a covariance of
  // 1e30 I gave a posterior std of [1.2e7, 0.0]).
  const std::string name = GetParam() == Transport::kTcp ? "mag-ok-tcp" : "mag-ok";
  request = PriorTrainRequest(name, 1000.0, 1e6);
  ASSERT_TRUE(train(request).ok());
  EXPECT_EQ(server_->WaitForJob(response.job().job_id()).state(), v1::JOB_STATE_SUCCEEDED);
  v1::EstimateRequest estimate;
  estimate.set_model(name);
  *estimate.mutable_measurements() = Batch(3, 2, 1000.0f);
  estimate.add_estimators(v1::ESTIMATOR_POSTERIOR_STD);
  v1::EstimateResponse refs;
  grpc::ClientContext estimate_context;
  ASSERT_TRUE(reconstruction_->Estimate(&estimate_context, estimate, &refs).ok());
  ASSERT_EQ(refs.posterior_std().values_size(), 6);
  // Prior variance 1e6, noise 0.1: the posterior std is ~0.1 in every coordinate.
  for (float s : refs.posterior_std().values()) EXPECT_NEAR(s, 0.1, 0.01);
}

// Issue 19, item 8 (c, d): the limit on n names the field the client set, and ranges print
// exact values.
TEST_P(ServiceTest, TrainLimitsNameTheClientsFieldAndExactValues) {
  v1::TrainResponse response;
  auto train = [&](const v1::TrainRequest& request) {
    grpc::ClientContext context;
    return training_->Train(&context, request, &response);
  };
  v1::TrainRequest request = PriorTrainRequest("lim", 0.0, 1.0);
  request.mutable_problem()->mutable_operator_()->mutable_identity()->set_dim(65536);
  grpc::Status status = train(request);
  ExpectCode(status, grpc::INVALID_ARGUMENT,
             "problem.operator.identity.dim: signal dimension n = 65536 exceeds 4096");
  EXPECT_THAT(status.error_message(), ::testing::Not(HasSubstr("architecture.dim")));
  request = PriorTrainRequest("lim", 0.0, 1.0);
  request.mutable_problem()->mutable_operator_()->mutable_convolution()->set_dim(5000);
  request.mutable_problem()->mutable_operator_()->mutable_convolution()->add_kernel(1.0);
  ExpectCode(train(request), grpc::INVALID_ARGUMENT, "problem.operator.convolution.dim");
  request = SmallTrainRequest("lim", v1::LOSS_APPROXIMATION);
  request.mutable_training()->set_steps(10000001);
  ExpectCode(train(request), grpc::INVALID_ARGUMENT,
             "training.steps: 10000001 must be in [1, 10000000]");
  request = SmallTrainRequest("lim", v1::LOSS_APPROXIMATION);
  request.mutable_training()->set_validation_size(1000001);
  ExpectCode(train(request), grpc::INVALID_ARGUMENT,
             "training.validation_size: 1000001 must be in [1, 1000000]");
}

// Issue 19, item 8 (b): Train with a request_id is idempotent: the retry of a call whose
// answer was lost (a 1 ms deadline) returns the job the first call started, even after a
// restart; the key of another model's job is ALREADY_EXISTS.
TEST_P(ServiceTest, TrainWithARequestIdStartsOneJob) {
  const std::string model = GetParam() == Transport::kTcp ? "idem-tcp" : "idem-inproc";
  const std::string key = model + "-7f3c9a2e-0b1d-4c55-9a1e-2f6d8b0c4e11";
  v1::TrainRequest request = SmallTrainRequest(model, v1::LOSS_APPROXIMATION, 20);
  request.set_request_id(key);
  {
    // The first try may or may not reach the server before its deadline.
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(1));
    v1::TrainResponse lost;
    training_->Train(&context, request, &lost);
  }
  v1::TrainResponse first, second;
  grpc::ClientContext c1, c2;
  ASSERT_TRUE(training_->Train(&c1, request, &first).ok());
  ASSERT_TRUE(training_->Train(&c2, request, &second).ok());
  EXPECT_EQ(first.job().job_id(), second.job().job_id());
  EXPECT_EQ(first.job().request_id(), key);
  // The default weight shows as the number it is (delta^2), not as a marker.
  const double delta = first.job().problem().noise_level();
  EXPECT_GT(delta, 0);
  EXPECT_DOUBLE_EQ(first.job().training().loss_weight(), delta * delta);
  const v1::TrainingJob done = server_->WaitForJob(first.job().job_id());
  EXPECT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED);
  // After it finished, the key still answers with the same job.
  grpc::ClientContext c3;
  v1::TrainResponse third;
  ASSERT_TRUE(training_->Train(&c3, request, &third).ok());
  EXPECT_EQ(third.job().job_id(), first.job().job_id());
  EXPECT_EQ(third.job().state(), v1::JOB_STATE_SUCCEEDED);
  // Exactly one job carries the key, and one version was published.
  grpc::ClientContext list_context;
  v1::ListTrainingJobsResponse jobs;
  ASSERT_TRUE(training_->ListTrainingJobs(&list_context, {}, &jobs).ok());
  int with_key = 0;
  for (const v1::TrainingJob& job : jobs.jobs()) with_key += job.request_id() == key ? 1 : 0;
  EXPECT_EQ(with_key, 1);
  grpc::ClientContext get_context;
  v1::GetModelRequest get;
  get.set_name(model);
  v1::GetModelResponse got;
  ASSERT_TRUE(models_->GetModel(&get_context, get, &got).ok());
  EXPECT_EQ(got.model().versions_size(), 1);

  v1::TrainRequest other = request;
  other.set_model_name(model + "-other");
  grpc::ClientContext c4;
  v1::TrainResponse refused;
  ExpectCode(training_->Train(&c4, other, &refused), grpc::ALREADY_EXISTS, "request_id");
  for (const std::string& bad :
       {std::string("has space"), std::string(129, 'k'), std::string("a/b")}) {
    v1::TrainRequest malformed = request;
    malformed.set_request_id(bad);
    grpc::ClientContext context;
    ExpectCode(training_->Train(&context, malformed, &refused), grpc::INVALID_ARGUMENT,
               "request_id");
  }
}

TEST(TrainRequestIdTest, SurvivesARestart) {
  const invnet::testing::ScratchDirectory scratch("restart");
  ServerOptions options;
  options.repository = scratch.Path("repository");
  v1::TrainRequest request = SmallTrainRequest("restarted", v1::LOSS_APPROXIMATION, 10);
  request.set_request_id("restart-key-1");
  std::string job_id;
  {
    std::unique_ptr<invnet::testing::TestServer> server =
        invnet::testing::TestServer::Start(options);
    ASSERT_NE(server, nullptr);
    const v1::TrainingJob done = server->TrainAndWait(request);
    ASSERT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED) << done.error();
    job_id = done.job_id();
  }
  std::unique_ptr<invnet::testing::TestServer> server = invnet::testing::TestServer::Start(options);
  ASSERT_NE(server, nullptr);
  grpc::ClientContext context;
  v1::TrainResponse response;
  ASSERT_TRUE(server->training().Train(&context, request, &response).ok());
  EXPECT_EQ(response.job().job_id(), job_id);
  EXPECT_EQ(response.job().state(), v1::JOB_STATE_SUCCEEDED);
}

// Issue 19, item 8 (a): bytes that are not a request message are INVALID_ARGUMENT saying so
// (gRPC's own answer is INTERNAL with an empty message).
TEST_P(ServiceTest, UnparsableRequestsAreInvalidArgument) {
  grpc::GenericStub generic(channel_);
  // Field 1 (model), length-delimited, announcing 2^28 bytes that never come.
  const char bytes[] = {0x0a, static_cast<char>(0x80), static_cast<char>(0x80),
                        static_cast<char>(0x80), 0x01, 'x'};
  for (const char* method : {"/invnet.v1.ReconstructionService/Reconstruct",
                             "/invnet.v1.TrainingService/Train",
                             "/invnet.v1.ModelService/GetModel"}) {
    grpc::Slice slice(bytes, sizeof(bytes));
    grpc::ByteBuffer request(&slice, 1);
    grpc::ByteBuffer reply;
    grpc::ClientContext context;
    std::mutex mu;
    std::condition_variable done_cv;
    bool done = false;
    grpc::Status status;
    generic.UnaryCall(&context, method, grpc::StubOptions(), &request, &reply,
                      [&](grpc::Status s) {
                        std::lock_guard<std::mutex> lock(mu);
                        status = std::move(s);
                        done = true;
                        done_cv.notify_one();
                      });
    std::unique_lock<std::mutex> lock(mu);
    ASSERT_TRUE(done_cv.wait_for(lock, std::chrono::seconds(10), [&] { return done; }));
    EXPECT_EQ(status.error_code(), grpc::INVALID_ARGUMENT) << method;
    EXPECT_THAT(status.error_message(), HasSubstr("could not be parsed")) << method;
  }
  ExpectStillServing();
}

INSTANTIATE_TEST_SUITE_P(Transports, ServiceTest,
                         ::testing::Values(Transport::kInProcess, Transport::kTcp),
                         [](const auto& info) {
                           return info.param == Transport::kTcp ? "Tcp" : "InProcess";
                         });

}  // namespace
}  // namespace invnet::server
