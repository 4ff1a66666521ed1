// libFuzzer target: a TrainRequest as a client sends it (binary protobuf), resolved by
// server/spec_codec.h and validated by the models layer exactly as JobManager::Submit does
// before it starts a job (without the dataset store: a dataset is stood in for by zeros).
//
// Any problem, architecture and training fields: operators of any size or with NaN entries,
// priors with bad weights or non-SPD covariances, negative or huge schedules. The contract:
// INVALID_ARGUMENT or RESOURCE_EXHAUSTED (limits), never a crash, never INTERNAL (which would
// mean LibTorch threw on an input that validation let through); an accepted request encodes
// back into the job record without trouble.

#include <ATen/ATen.h>
#include <google/protobuf/stubs/logging.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "invnet/v1/training_service.pb.h"
#include "models/trainer.h"
#include "server/names.h"
#include "server/spec_codec.h"

namespace {

void Check(const absl::Status& status) {
  if (status.ok() || status.code() == absl::StatusCode::kInvalidArgument ||
      status.code() == absl::StatusCode::kResourceExhausted) {
    return;
  }
  std::fprintf(stderr, "unexpected status: %s\n", status.ToString().c_str());
  std::abort();
}

absl::Status Submit(const invnet::v1::TrainRequest& request) {
  using namespace invnet;          // NOLINT(build/namespaces): a fuzz entry point
  using namespace invnet::server;  // NOLINT(build/namespaces)
  if (absl::Status s = ValidateName(request.model_name(), "model_name"); !s.ok()) return s;
  // A smaller tensor limit than the server's keeps each execution fast; the limit logic itself
  // is the same.
  absl::StatusOr<ResolvedTraining> resolved =
      ResolveTrainRequest(request, TensorLimits{int64_t{1} << 16});
  if (!resolved.ok()) return resolved.status();
  TrainingRequest train;
  train.problem = resolved->problem;
  train.architecture = resolved->architecture;
  train.training = resolved->training;
  if (train.problem.dataset.has_value()) {
    const int64_t dim = std::clamp<int64_t>(train.architecture.dim, 1, 4096);
    train.dataset_samples = at::zeros({8, dim}, at::kFloat);
    train.problem.dataset->num_samples = 8;
    train.problem.dataset->dim = dim;
  }
  if (absl::Status s = ValidateTrainingRequest(train); !s.ok()) return s;
  v1::TrainingJob record;
  EncodeProblem(resolved->problem, record.mutable_problem());
  EncodeArchitecture(resolved->architecture, record.mutable_architecture());
  EncodeTraining(resolved->training, record.mutable_training());
  return absl::OkStatus();
}

}  // namespace

// Protobuf logs every string field with invalid UTF-8 it parses; a fuzzer makes millions.
extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  invnet::v1::TrainRequest request;
  if (!request.ParseFromArray(data, static_cast<int>(size))) return 0;
  Check(Submit(request));
  return 0;
}
