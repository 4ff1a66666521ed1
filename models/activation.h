#ifndef INVNET_MODELS_ACTIVATION_H_
#define INVNET_MODELS_ACTIVATION_H_

// The activations an iResNet block may use. All are smooth (the losses differentiate through
// Jacobians, so ReLU is excluded) and 1-Lipschitz (the block's Lipschitz bound is the product
// of its layers' spectral norms).

#include <ATen/core/Tensor.h>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace invnet {

enum class Activation {
  kElu,       // x > 0 ? x : exp(x) - 1             (alpha = 1: C^1, slope in (0, 1])
  kTanh,      // tanh(x)                            (slope in (0, 1])
  kSoftplus,  // log(1 + exp(x))                    (slope in (0, 1))
  kLipSwish,  // x * sigmoid(x) / 1.1               (max slope 1.0998 / 1.1 < 1)
};

absl::string_view ActivationName(Activation activation);  // "elu", "tanh", ...
// Accepts the names ActivationName returns; INVALID_ARGUMENT otherwise.
absl::StatusOr<Activation> ParseActivation(absl::string_view name);

// Elementwise activation and its derivative, as differentiable LibTorch expressions.
at::Tensor ApplyActivation(Activation activation, const at::Tensor& x);
at::Tensor ActivationSlope(Activation activation, const at::Tensor& x);

}  // namespace invnet

#endif  // INVNET_MODELS_ACTIVATION_H_
