#ifndef INVNET_TESTS_TESTING_NETWORKS_H_
#define INVNET_TESTS_TESTING_NETWORKS_H_

// Networks with known, worst-case behaviour for tests.

#include <cstdint>
#include <memory>

#include <ATen/core/Tensor.h>

#include "models/iresnet.h"

namespace invnet::testing {

// An iResNet of `num_blocks` linear residual blocks g_k(x) = W_k x + b_k (layers_per_block = 1)
// with W_k = c * Q_k diag(-1, d_2, ..., d_n) Q_k^T: symmetric, sigma(W_k) = c, and an
// eigenvalue exactly -c. Plain fixed-point iteration contracts by exactly c per step in that
// direction (and oscillates), the slowest case the Lipschitz bound allows.
std::unique_ptr<IResNet> MakeWorstCaseLinearNetwork(int64_t dim, int64_t num_blocks, double c,
                                                    at::ScalarType dtype, uint64_t seed);

// A nonlinear network whose every layer is normalised to exactly sigma = c.
std::unique_ptr<IResNet> MakeSaturatedNetwork(const IResNetConfig& config, at::ScalarType dtype);

}  // namespace invnet::testing

#endif  // INVNET_TESTS_TESTING_NETWORKS_H_
