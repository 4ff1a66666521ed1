#ifndef INVNET_MODELS_CHECKPOINT_H_
#define INVNET_MODELS_CHECKPOINT_H_

// A checkpoint is one self-describing file per trained network: the architecture, the problem
// it was trained for (operator, noise level, prior or dataset), the loss and its schedule, the
// training metrics, the certified Lipschitz constants and the weights. It is an archive
// (archive.h) of kind "invnet.checkpoint".
//
// Loading trusts nothing: the archive is checksummed, every field is validated, the network is
// rebuilt and re-certified, and a checkpoint whose network is not invertible is refused.
// Codes: DATA_LOSS (truncated or corrupted file), INVALID_ARGUMENT (not a checkpoint, from a
// newer format, or inconsistent content), FAILED_PRECONDITION (the network is not invertible),
// NOT_FOUND / PERMISSION_DENIED / RESOURCE_EXHAUSTED / INTERNAL from the file system.

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "models/iresnet.h"
#include "models/problem.h"

namespace invnet {

struct Checkpoint {
  IResNetConfig architecture;
  at::ScalarType dtype = at::kFloat;
  ProblemSpec problem;
  TrainingSpec training;
  std::map<std::string, double> metrics;               // e.g. "val_mse", "train_seconds"
  std::map<std::string, std::vector<double>> curves;   // e.g. "step", "loss", "val_mse"
  LipschitzCertificate certificate;                    // as certified when saved
  std::map<std::string, std::string> labels;           // provenance, e.g. "job_id", "created"
  std::vector<std::pair<std::string, at::Tensor>> state;  // IResNet::NamedState()
};

// Snapshot of `network` (its state is copied) with the given records; certifies the network.
Checkpoint MakeCheckpoint(const IResNet& network, ProblemSpec problem, TrainingSpec training,
                          std::map<std::string, double> metrics = {},
                          std::map<std::string, std::vector<double>> curves = {});

std::string SerializeCheckpoint(const Checkpoint& checkpoint);
absl::StatusOr<Checkpoint> ParseCheckpoint(std::string bytes);

// Atomic: the file at `path` is either the previous one or the complete new one.
absl::Status SaveCheckpoint(const Checkpoint& checkpoint, const std::string& path);
absl::StatusOr<Checkpoint> LoadCheckpoint(const std::string& path);

// The network in evaluation mode, re-certified. INVALID_ARGUMENT when the state's tensors are
// not those of the architecture (checked before the network is allocated, so a checkpoint that
// claims a huge architecture costs nothing) or the stored certificate does not match the
// weights; FAILED_PRECONDITION when a block's bound is >= 1.
absl::StatusOr<std::unique_ptr<IResNet>> RestoreNetwork(const Checkpoint& checkpoint);

}  // namespace invnet

#endif  // INVNET_MODELS_CHECKPOINT_H_
