#ifndef INVNET_TESTS_TESTING_GRADIENTS_H_
#define INVNET_TESTS_TESTING_GRADIENTS_H_

// Checks autograd gradients w.r.t. an iResNet's parameters against central differences.

#include <functional>

#include <ATen/core/Tensor.h>

#include "models/iresnet.h"

namespace invnet::testing {

// `scalar(net)` must return a 0-dim float64 tensor that depends on the network's parameters.
// Compares d scalar / d p for one random entry of every `stride`-th parameter tensor (seeded),
// with relative tolerance `tolerance` (absolute below magnitude 1). Reports through gtest.
void ExpectParameterGradientsMatch(IResNet& net, const std::function<at::Tensor(IResNet&)>& scalar,
                                   double tolerance = 1e-5, int stride = 1);

}  // namespace invnet::testing

#endif  // INVNET_TESTS_TESTING_GRADIENTS_H_
