#include "models/image_metrics.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "models/torch_status.h"

namespace invnet {
namespace {

absl::Status CheckPair(const at::Tensor& estimate, const at::Tensor& reference, double range) {
  if (!estimate.defined() || !reference.defined() || estimate.dim() != 3 ||
      estimate.sizes() != reference.sizes() || estimate.numel() == 0) {
    return absl::InvalidArgumentError(
        "images: estimate and reference must be non-empty [N, H, W] tensors of one shape");
  }
  if (!(range > 0) || !std::isfinite(range)) {
    return absl::InvalidArgumentError(absl::StrCat("range: must be positive, got ", range));
  }
  return absl::OkStatus();
}

// The separable Gaussian window (standard deviation 1.5) of `size` taps as [1, 1, size, size].
at::Tensor GaussianWindow(int64_t size) {
  at::Tensor offsets = at::arange(size, at::kDouble) - static_cast<double>(size - 1) / 2.0;
  at::Tensor taps = at::exp(-offsets.pow(2) / (2.0 * 1.5 * 1.5));
  at::Tensor window = taps.unsqueeze(1) * taps.unsqueeze(0);
  return (window / window.sum()).view({1, 1, size, size});
}

}  // namespace

absl::StatusOr<at::Tensor> Psnr(const at::Tensor& estimate, const at::Tensor& reference,
                                double range) {
  if (absl::Status s = CheckPair(estimate, reference, range); !s.ok()) return s;
  return GuardTorchOr<at::Tensor>("Psnr", [&]() -> absl::StatusOr<at::Tensor> {
    at::Tensor mse = (estimate.to(at::kDouble) - reference.to(at::kDouble)).pow(2).mean({1, 2});
    return 10.0 * at::log10(range * range / mse);
  });
}

absl::StatusOr<at::Tensor> Ssim(const at::Tensor& estimate, const at::Tensor& reference,
                                double range) {
  if (absl::Status s = CheckPair(estimate, reference, range); !s.ok()) return s;
  return GuardTorchOr<at::Tensor>("Ssim", [&]() -> absl::StatusOr<at::Tensor> {
    at::NoGradGuard no_grad;
    int64_t size = std::min<int64_t>({11, estimate.size(1), estimate.size(2)});
    if (size % 2 == 0) --size;
    at::Tensor window = GaussianWindow(size);
    at::Tensor x = estimate.to(at::kDouble).unsqueeze(1);  // [N, 1, H, W]
    at::Tensor y = reference.to(at::kDouble).unsqueeze(1);
    auto local = [&](const at::Tensor& image) { return at::conv2d(image, window); };
    at::Tensor mu_x = local(x), mu_y = local(y);
    at::Tensor var_x = local(x * x) - mu_x.pow(2);
    at::Tensor var_y = local(y * y) - mu_y.pow(2);
    at::Tensor cov = local(x * y) - mu_x * mu_y;
    const double c1 = std::pow(0.01 * range, 2), c2 = std::pow(0.03 * range, 2);
    at::Tensor map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) /
                     ((mu_x.pow(2) + mu_y.pow(2) + c1) * (var_x + var_y + c2));
    return map.mean({1, 2, 3});
  });
}

}  // namespace invnet
