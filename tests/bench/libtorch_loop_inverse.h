#ifndef INVNET_TESTS_BENCH_LIBTORCH_LOOP_INVERSE_H_
#define INVNET_TESTS_BENCH_LIBTORCH_LOOP_INVERSE_H_

// The benchmarks' baseline inverse: the fixed-point loop as the common Python iResNet libraries
// write it. For each block in reverse order, u = v, then a fixed number of iterations
// u = v - g(u) on the whole batch, with g evaluated by LibTorch ops (F.linear's
// addmm(b, x, W.t()) and the activation per layer) on the network's effective weights; no
// per-sample stopping, no convergence test.
//
// The weights are taken from IResNet::EffectiveWeights() when the object is built (so in the
// network's current mode: a training-mode network gives the weights its Forward uses then).
// Call under at::NoGradGuard or c10::InferenceMode; const methods may run concurrently.

#include <cstdint>
#include <utility>
#include <vector>

#include <ATen/ATen.h>

#include "models/activation.h"
#include "models/iresnet.h"

namespace invnet::bench {

class LibTorchLoopInverse {
 public:
  LibTorchLoopInverse(const IResNet& net, int64_t iterations)
      : activation_(net.config().activation), iterations_(iterations) {
    for (const auto& block : net.EffectiveWeights()) {
      std::vector<Layer> layers;
      // W.t() is a view, as in F.linear(x, W, b) = addmm(b, x, W.t()).
      for (const auto& layer : block) layers.push_back({layer.weight.t(), layer.bias});
      blocks_.push_back(std::move(layers));
    }
  }

  // phi^-1(y) approximately, y [batch, dim] of the network's dtype.
  at::Tensor Inverse(const at::Tensor& y) const {
    at::Tensor v = y;
    for (int64_t k = static_cast<int64_t>(blocks_.size()) - 1; k >= 0; --k) {
      at::Tensor u = v;
      for (int64_t it = 0; it < iterations_; ++it) u = v - Residual(k, u);
      v = u;
    }
    return v;
  }

  // g evaluations per sample over all blocks.
  int64_t iterations_per_sample() const {
    return iterations_ * static_cast<int64_t>(blocks_.size());
  }

 private:
  struct Layer {
    at::Tensor weight_t;  // [in, out]
    at::Tensor bias;      // [out]
  };

  at::Tensor Residual(int64_t k, const at::Tensor& x) const {
    const std::vector<Layer>& block = blocks_[k];
    at::Tensor h = x;
    for (size_t l = 0; l < block.size(); ++l) {
      at::Tensor z = at::addmm(block[l].bias, h, block[l].weight_t);
      if (l + 1 == block.size()) return z;
      h = ApplyActivation(activation_, z);
    }
    return h;
  }

  Activation activation_;
  int64_t iterations_;
  std::vector<std::vector<Layer>> blocks_;
};

}  // namespace invnet::bench

#endif  // INVNET_TESTS_BENCH_LIBTORCH_LOOP_INVERSE_H_
