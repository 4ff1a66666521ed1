#include "models/activation.h"

#include <ATen/ATen.h>

#include "absl/strings/str_cat.h"

namespace invnet {
namespace {
constexpr double kLipSwishScale = 1.1;
}  // namespace

absl::string_view ActivationName(Activation activation) {
  switch (activation) {
    case Activation::kElu:
      return "elu";
    case Activation::kTanh:
      return "tanh";
    case Activation::kSoftplus:
      return "softplus";
    case Activation::kLipSwish:
      return "lipswish";
  }
  return "unknown";
}

absl::StatusOr<Activation> ParseActivation(absl::string_view name) {
  for (Activation a : {Activation::kElu, Activation::kTanh, Activation::kSoftplus,
                       Activation::kLipSwish}) {
    if (name == ActivationName(a)) return a;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "activation: unknown name '", name, "' (expected elu, tanh, softplus or lipswish)"));
}

at::Tensor ApplyActivation(Activation activation, const at::Tensor& x) {
  switch (activation) {
    case Activation::kElu:
      return at::elu(x);
    case Activation::kTanh:
      return at::tanh(x);
    case Activation::kSoftplus:
      return at::softplus(x);
    case Activation::kLipSwish:
      return x * at::sigmoid(x) / kLipSwishScale;
  }
  return x;
}

at::Tensor ActivationSlope(Activation activation, const at::Tensor& x) {
  switch (activation) {
    case Activation::kElu:
      // exp(min(x, 0)) is 1 for x > 0 and exp(x) below; its own derivative is right on both sides.
      return at::exp(at::clamp_max(x, 0.0));
    case Activation::kTanh: {
      at::Tensor t = at::tanh(x);
      return 1.0 - t * t;
    }
    case Activation::kSoftplus:
      return at::sigmoid(x);
    case Activation::kLipSwish: {
      at::Tensor s = at::sigmoid(x);
      return (s + x * s * (1.0 - s)) / kLipSwishScale;
    }
  }
  return at::ones_like(x);
}

}  // namespace invnet
