#ifndef INVNET_MODELS_MEMORY_ESTIMATE_H_
#define INVNET_MODELS_MEMORY_ESTIMATE_H_

// Estimates of the memory a computation will need, from its description alone, so that a
// request too large for the machine is refused before anything is allocated.
//
// The estimates count what dominates: tensors whose size grows with the request (weights and
// optimiser state, the activations and Jacobian tangents that autograd keeps for one training
// step, the prior's per-component matrices, the validation set). They leave out what every job
// shares (LibTorch itself, thread stacks) and are meant to be within a small factor of the
// resident memory a job adds, erring high. All sizes are in bytes, as doubles (the products of
// the largest allowed dimensions overflow 64-bit integers).
//
// Thread safety: pure functions.

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "models/iresnet.h"
#include "models/problem.h"

namespace invnet {

// The (in, out) sizes of every linear layer, block by block, as IResNet builds them: the first
// layer takes dim, the last gives dim, the others are hidden_width wide. `config` must be valid.
std::vector<std::vector<std::pair<int64_t, int64_t>>> LayerShapes(const IResNetConfig& config);

// Numbers in the network's state (IResNet::NamedState): weights, biases and the spectral-norm
// vectors u, v and sigma of every layer.
double NetworkStateNumbers(const IResNetConfig& config);

// Where a training job's memory goes.
struct TrainingMemory {
  double network = 0;      // weights, gradients, Adam's two moments, frozen copies for inverses
  double activations = 0;  // what one step keeps for its backward pass, and its temporaries
  double problem = 0;      // operator, prior (and its exact estimators), dataset, validation set
  double total() const { return network + activations + problem; }
  // "network 1.2 GB, activations 30 MB, problem 4 MB": for messages.
  std::string Describe() const;
};

// The signals' source as the estimate needs it: a prior with `prior_components` components
// (0 without one) or a dataset of `dataset_rows` rows of dimension architecture.dim, and the
// operator's output dimension `measurement_dim`.
struct ProblemSize {
  int64_t measurement_dim = 0;
  int64_t prior_components = 0;
  int64_t dataset_rows = 0;
};

// The size of `problem` for the estimate (operator output dimension from its matrix when dense,
// else n; components of the prior). Allocates nothing.
ProblemSize SizeOf(const ProblemSpec& problem, int64_t signal_dim);

// Peak memory of training `architecture` with `training` on a problem of `size`.
TrainingMemory EstimateTrainingMemory(const IResNetConfig& architecture,
                                      const TrainingSpec& training, const ProblemSize& size);

// Working memory per sample of the network's posterior spread (posterior_spread.h): the n
// Jacobian tangents through a layer as wide as max(n, hidden_width), a few live copies, and a
// few [n, n] matrices, all float64.
double PosteriorSpreadBytesPerSample(int64_t dim, int64_t hidden_width);

// "1.5 GB", "12 MB", "900 kB": decimal units, for messages.
std::string FormatBytes(double bytes);

}  // namespace invnet

#endif  // INVNET_MODELS_MEMORY_ESTIMATE_H_
