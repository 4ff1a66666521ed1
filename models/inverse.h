#ifndef INVNET_MODELS_INVERSE_H_
#define INVNET_MODELS_INVERSE_H_

// Serving-time evaluation of a trained iResNet: phi(x) and the inverse phi^-1(y).
//
// FrozenIResNet is an immutable copy of a network in evaluation mode. The spectral
// normalisation is applied once, when it is built, and the weights are stored contiguously (as
// float32 and as float64, so either input precision runs without conversion). Evaluation uses
// plain loops over these arrays, without LibTorch dispatch or autograd, so a batch-1 request
// does not pay the framework's per-operation cost hundreds of times.
//
// The inverse solves one block at a time in reverse order, u + g_k(u) = v, by the fixed point
// u_{j+1} = v - g_k(u_j) (optionally Anderson-accelerated). Each sample stops on its own when
// the a-posteriori bound of its block meets that block's share of the tolerance (L_k the block's
// certified Lipschitz bound, norms over the whole sample vector); converged samples leave the
// active set, so easy samples cost little and hard ones get the iterations they need.
//
// The tolerance bounds the whole inverse, ||x_hat - phi^-1(y)|| <= tolerance. An error e_k left
// in block k's solution grows through the blocks solved after it by at most prod_{j<k}
// 1/(1 - L_j), so block k gets tol_k = tolerance / (K prod_{j<k} 1/(1 - L_j)) (nine tenths of
// that when the answer is rounded to float32, which takes the rest). The solve runs in float64
// whatever the input's precision: float32 cannot reach these shares (its rounding floor is about
// 1e-7 ||x|| / (1 - L) per block). Each block's bound includes a rigorous bound on the float64
// rounding of g and of the fixed-point map (Higham's gamma_n for the products, the activations'
// ulp errors), so the reported bound is a true bound on the error of the returned x.
//
// Thread safety: a FrozenIResNet is immutable; Forward and Inverse may run concurrently. Large
// batches are split into chunks that run on LibTorch's intra-op thread pool (at::parallel_for).

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include <ATen/core/Tensor.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "models/activation.h"

namespace invnet {

class IResNet;

struct InverseOptions {
  // Absolute tolerance on the whole inverse, ||x_hat - phi^-1(y)|| <= tolerance, in the units
  // of x (see above for how it is split over the blocks).
  double tolerance = 1e-5;
  // For solves inside training only (the reconstruction loss, validation while training), where
  // the tolerance is a cost/accuracy knob rather than a guarantee: the tolerance applies to each
  // block's a-posteriori bound, the solve runs in the input's precision, rounding is not bounded
  // and `converged` means every block met it.
  bool per_block_tolerance = false;
  // Cap on fixed-point iterations (evaluations of g_k) per block and sample.
  int64_t max_iterations = 1000;
  // Anderson acceleration (type II, with restart when the residual grows). On by default: on
  // the trained networks of the benchmark it cuts iterations 1.4-2.6x for the same tolerance.
  bool anderson = true;
  int64_t anderson_memory = 5;  // effective memory is min(anderson_memory, dim)
  // Samples per work chunk; 0 picks one from the network's width, the batch and the threads.
  int64_t chunk_size = 0;
  // Polled before every chunk but a worker's first and every 32 rounds of a chunk's solve (from
  // worker threads, so it must be thread-safe); when it returns true the solve stops and
  // Inverse returns CANCELLED.
  std::function<bool()> should_stop;
};

// OK, or INVALID_ARGUMENT naming the bad option (tolerance > 0, max_iterations >= 1, ...).
absl::Status ValidateInverseOptions(const InverseOptions& options);

struct InverseResult {
  at::Tensor x;                 // [batch, dim], dtype of y: the reconstruction phi^-1(y)
  at::Tensor iterations;        // int64 [batch]: g evaluations over all blocks
  at::Tensor converged;         // bool [batch]: error_bound <= tolerance
  at::Tensor error_bound;       // float64 [batch]: bound on ||x - phi^-1(y)|| (see below)
  at::Tensor forward_residual;  // float64 [batch]: ||phi(x) - y|| (phi evaluated in float64)
};
// The error bound is the smaller of two rigorous bounds on the returned x:
//  - the per-block bounds b_k composed through the inverse blocks' Lipschitz constants,
//    e = b_1 + (b_2 + (b_3 + ...) / (1 - L_3)) / (1 - L_2) ..., plus ||x - x_float64|| when the
//    answer was rounded to float32;
//  - prod_k 1/(1 - L_k) * (||phi(x) - y|| + a bound on the rounding of that forward pass).
// Both include floating-point rounding. (With per_block_tolerance, only the first, without
// rounding terms.)

class FrozenIResNet {
 public:
  enum class Bounds {
    kCertified,  // IResNet::Certify(): exact SVDs. For serving.
    kEstimated,  // IResNet::EstimatedBlockBounds(): no SVD. For inverses inside training.
  };
  // Copies `network`'s evaluation-mode weights and takes each block's Lipschitz bound as
  // `bounds` says. FAILED_PRECONDITION when a bound is >= 1 (not invertible).
  static absl::StatusOr<std::shared_ptr<const FrozenIResNet>> Create(
      const IResNet& network, Bounds bounds = Bounds::kCertified);

  int64_t dim() const { return dim_; }
  int64_t num_blocks() const { return static_cast<int64_t>(block_lipschitz_.size()); }
  int64_t hidden_width() const { return hidden_width_; }
  Activation activation() const { return activation_; }
  // Certified Lipschitz bound of each block's residual, L_k < 1.
  const std::vector<double>& block_lipschitz() const { return block_lipschitz_; }

  // phi(x) for x [batch, dim] (float32 or float64; result in the same dtype).
  // INVALID_ARGUMENT for a bad shape, dtype or non-finite value; CANCELLED when `should_stop`
  // (polled before every chunk but a worker's first, from worker threads) asked to stop.
  absl::StatusOr<at::Tensor> Forward(const at::Tensor& x,
                                     const std::function<bool()>& should_stop = {}) const;
  // phi^-1(y) with per-sample diagnostics. INVALID_ARGUMENT for bad y or options, CANCELLED
  // when options.should_stop asked to stop.
  absl::StatusOr<InverseResult> Inverse(const at::Tensor& y, const InverseOptions& options) const;

  // Weights of one layer, as stored for the kernels.
  template <typename T>
  struct DenseLayer {
    int64_t in = 0;
    int64_t out = 0;
    std::vector<T> weight_t;  // [in, out]: transposed, for the tiles over many output columns
    std::vector<T> weight;    // [out, in]: rows, for dot products in narrow layers (out small)
    std::vector<T> bias;      // [out]
  };
  template <typename T>
  using Block = std::vector<DenseLayer<T>>;
  // The float64 weights, [block][layer], for analyses outside the solver (the exact Jacobian of
  // a served network, jacobian.h).
  const std::vector<Block<double>>& float64_blocks() const { return blocks_f64_; }

 private:
  FrozenIResNet() = default;

  template <typename T>
  const std::vector<Block<T>>& blocks() const;

  template <typename T>
  void ForwardChunk(const T* x, int64_t rows, T* out) const;
  template <typename T>
  absl::Status SolveChunk(const T* y, int64_t rows, const InverseOptions& options,
                          const std::vector<double>& block_tolerance, bool bound_rounding, T* x,
                          int64_t* iterations, bool* converged, double* error_bound) const;
  // phi(x) in float64 and, per sample, a bound on the rounding error of that evaluation.
  void ForwardChunkWithRounding(const double* x, int64_t rows, double* out,
                                double* rounding) const;
  // A bound on ||fl(v - g_k(u)) - (v - g_k(u))|| for float arithmetic with unit `eps`, given
  // ||u|| and ||v||, including the rounding of the residual norm computed from it.
  double ResidualRoundingBound(int64_t k, double u_norm, double v_norm, double eps) const;
  template <typename T>
  absl::StatusOr<InverseResult> InverseTyped(const at::Tensor& y,
                                             const InverseOptions& options) const;
  template <typename T>
  absl::StatusOr<InverseResult> CertifiedInverse(const at::Tensor& y,
                                                 const InverseOptions& options) const;
  int64_t ChunkSize(const InverseOptions& options, int64_t batch) const;

  int64_t dim_ = 0;
  int64_t hidden_width_ = 0;
  Activation activation_ = Activation::kElu;
  std::vector<double> block_lipschitz_;
  // Per block and layer, what the rounding bound needs: a bound on sigma_max(W) (certified, or
  // ||W||_F where none was computed), ||W||_F, ||b||, fan-in and width.
  struct LayerNorms {
    double sigma = 0.0;
    double frobenius = 0.0;
    double bias_norm = 0.0;
    int64_t in = 0;
    int64_t out = 0;
  };
  std::vector<std::vector<LayerNorms>> layer_norms_;
  double activation_at_zero_ = 0.0;  // |act(0)|: log 2 for softplus, 0 for the others
  std::vector<Block<float>> blocks_f32_;
  std::vector<Block<double>> blocks_f64_;
};

}  // namespace invnet

#endif  // INVNET_MODELS_INVERSE_H_
