#ifndef INVNET_MODELS_IRESNET_H_
#define INVNET_MODELS_IRESNET_H_

// An invertible residual network phi = (Id + g_K) o ... o (Id + g_1) (Behrmann et al. 2019).
// Each g_k is an MLP whose weight matrices are spectrally normalised, W <- W * min(1, c_l/sigma(W)),
// and whose activations are 1-Lipschitz, so Lip(g_k) <= product of its layers' sigmas <= c < 1
// and every block is invertible by fixed-point iteration (see inverse.h). The layer caps c_l
// multiply to the block's bound c (LipschitzSplit), as models/README.md section 2 defines it.
//
// This class is the trainable form: parameters are LibTorch tensors with requires_grad, the
// forward pass is differentiable, and LinearizeResidual() gives each block's Jacobian as an
// explicit, differentiable product (J_g = W_L D_{L-1} W_{L-1} ... D_1 W_1, D = diag(act')), so
// log-determinants and divergences need no extra backward passes (jacobian.h).
//
// Spectral normalisation. sigma(W) is estimated by power iteration with persistent vectors u, v.
// PowerIterationStep() advances the estimate and is a no-op outside training mode: in evaluation
// mode the normalisation is frozen, otherwise phi would change between a forward pass and its
// inverse. In training mode the effective weight uses sigma = u^T W v with gradient through W
// (Miyato et al. 2018); in evaluation mode it uses the stored estimate. Power iteration
// approaches sigma from below, so CalibrateSpectralNorms() replaces the estimate by the exact
// value (SVD) after training; Certify() then reports the bound the served network satisfies.
//
// Thread safety: const methods may run concurrently; mutating methods (SetTraining,
// PowerIterationStep, CalibrateSpectralNorms, LoadState, optimiser steps on Parameters())
// need exclusive access. Tensor-returning methods require inputs of shape [batch, dim] and the
// network's dtype; a violation throws c10::Error (callers at the API boundary validate first).

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "models/activation.h"

namespace invnet {

// The largest n a network takes (operators allow more: operators.h).
inline constexpr int64_t kMaxIResNetDim = 4096;

// How the block bound c is shared by a block's L layers (their caps c_l multiply to c, so a block
// whose layers all sit at their caps has Lip(g) = c up to the activations' slopes).
enum class LipschitzSplit {
  kGeometric,   // every layer at c^(1/L): the default
  kLastLayer,   // inner layers at 1, the last at c
  kEveryLayer,  // every layer at c, so the block is at c^L: checkpoints written before the split
};
absl::string_view LipschitzSplitName(LipschitzSplit split);  // "geometric", "last_layer", ...
// Accepts the names LipschitzSplitName returns; INVALID_ARGUMENT otherwise.
absl::StatusOr<LipschitzSplit> ParseLipschitzSplit(absl::string_view name);

struct IResNetConfig {
  int64_t dim = 2;               // n: input and output dimension (1 .. kMaxIResNetDim)
  // K residual blocks (1 .. 64). 6 by default: with 4 blocks at c = 0.9, phi's Lipschitz bound
  // 1.9^4 = 13 is below what the posterior-mean map's inverse needs on ill-conditioned random2d
  // problems (reconstruction training stalled at 1.2x the Bayes risk); 6 gives 47 while the
  // inverse's bound 10^6 still lets float64 certify the default tolerance (8 blocks: 10^8, and
  // no sample converged at 1e-5).
  int64_t num_blocks = 6;
  int64_t hidden_width = 64;     // width of the hidden layers of each block's MLP (1 .. 4096)
  int64_t layers_per_block = 3;  // linear layers per MLP (1 .. 8); 1 means g(x) = W x + b
  Activation activation = Activation::kElu;
  double lipschitz_coeff = 0.9;  // c in (0, 1): bound on every block's Lipschitz constant
  LipschitzSplit lipschitz_split = LipschitzSplit::kGeometric;
  uint64_t seed = 0;             // initialisation seed (weights and power-iteration vectors)
};

// OK, or INVALID_ARGUMENT naming the offending field.
absl::Status ValidateIResNetConfig(const IResNetConfig& config);

// The spectral-norm cap c_l of layer `layer` (0-based) of every block.
double LayerLipschitzCap(const IResNetConfig& config, int64_t layer);

// What Certify() measured: sigma_max of every effective (normalised) weight
// matrix, and the block Lipschitz bounds they imply.
struct LipschitzCertificate {
  std::vector<std::vector<double>> layer_sigmas;  // [block][layer]
  std::vector<double> block_bounds;               // product of the block's layer sigmas
  double max_block_bound = 0.0;
  // Bi-Lipschitz constants of phi: prod(1 - L_k) <= |phi(a)-phi(b)| / |a-b| <= prod(1 + L_k).
  double lower_lipschitz = 0.0;
  double upper_lipschitz = 0.0;
  bool invertible() const { return max_block_bound < 1.0; }
};

// One block's residual MLP g evaluated at a batch of points, holding what its Jacobian needs.
class ResidualLinearization {
 public:
  // g(x), [batch, dim].
  const at::Tensor& value() const { return value_; }
  // J_g(x) v for p tangent vectors per sample, stored as rows: tangents [batch, p, dim] ->
  // [batch, p, dim]. Differentiable. (Rows keep every product a single GEMM over batch * p.)
  at::Tensor Apply(const at::Tensor& tangents) const;
  // J_g(x)^T w for cotangent rows w [batch, p, dim]; returns [batch, p, dim].
  at::Tensor ApplyTranspose(const at::Tensor& cotangents) const;

 private:
  friend class IResNet;
  std::vector<at::Tensor> weights_;  // effective W_l, [out_l, in_l]
  std::vector<at::Tensor> slopes_;   // act'(z_l) at the hidden pre-activations, [batch, out_l]
  at::Tensor value_;
};

class IResNet {
 public:
  // A freshly initialised network in training mode, deterministic in config.seed. Weights are
  // drawn in float64 and converted, so networks of different dtypes start from the same point.
  // dtype: at::kFloat or at::kDouble. INVALID_ARGUMENT for a bad config or dtype.
  static absl::StatusOr<std::unique_ptr<IResNet>> Create(const IResNetConfig& config,
                                                         at::ScalarType dtype);
  ~IResNet();
  IResNet(const IResNet&) = delete;
  IResNet& operator=(const IResNet&) = delete;

  const IResNetConfig& config() const;
  at::ScalarType dtype() const;
  int64_t dim() const { return config().dim; }
  int64_t num_blocks() const { return config().num_blocks; }

  void SetTraining(bool training);
  bool is_training() const;
  // One power-iteration step for every layer (no gradient). No-op in evaluation mode.
  void PowerIterationStep();

  // phi(x) for x of shape [batch, dim].
  at::Tensor Forward(const at::Tensor& x) const;
  // g_block(x) and its linearisation; block in [0, num_blocks).
  at::Tensor Residual(int64_t block, const at::Tensor& x) const;
  ResidualLinearization LinearizeResidual(int64_t block, const at::Tensor& x) const;

  // The trainable tensors (weights and biases), for an optimiser.
  std::vector<at::Tensor> Parameters() const;
  // Every tensor that defines the network (parameters and spectral-norm state), by stable name
  // ("block0.layer1.weight", ...), for checkpoints. Shares storage with the network.
  std::vector<std::pair<std::string, at::Tensor>> NamedState() const;
  // Replaces the state by `state` (same names and shapes, finite values; converted to dtype()).
  // INVALID_ARGUMENT naming the first offending entry; the network is unchanged on error.
  absl::Status LoadState(const std::vector<std::pair<std::string, at::Tensor>>& state);

  // The weights phi uses in its current mode, W_eff = W * min(1, c / sigma), detached:
  // [block][layer]. (In training mode sigma = u^T W v, in evaluation mode the stored estimate;
  // the two agree right after PowerIterationStep().)
  struct EffectiveLayer {
    at::Tensor weight;  // [out, in]
    at::Tensor bias;    // [out]
  };
  std::vector<std::vector<EffectiveLayer>> EffectiveWeights() const;

  // Replaces each layer's sigma estimate (and u, v) by the exact top singular triple, so the
  // evaluation-mode weights satisfy sigma(W_eff) <= c to round-off.
  void CalibrateSpectralNorms();
  // Bounds sigma_max of every effective weight (current mode) from above: TightSpectralNorm.
  LipschitzCertificate Certify() const;
  // Block Lipschitz bounds from the current sigma estimates, prod_l min(sigma_l, c_l): free to
  // compute, and exact after CalibrateSpectralNorms(); an estimate (from below) during training.
  std::vector<double> EstimatedBlockBounds() const;

 private:
  struct Impl;
  explicit IResNet(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// A rigorous upper bound on sigma_max(matrix) (matrix [out, in], any float dtype), tight to about
// 1e-12 relative: the largest singular value by SVD in float64 when the smaller side is <= 512,
// otherwise the square root of the largest eigenvalue of the smaller Gram matrix (W W^T or
// W^T W, float64), each plus a margin for the float64 rounding of that computation.
double TightSpectralNorm(const at::Tensor& matrix);

}  // namespace invnet

#endif  // INVNET_MODELS_IRESNET_H_
