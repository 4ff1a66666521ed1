#ifndef INVNET_MODELS_IMAGE_METRICS_H_
#define INVNET_MODELS_IMAGE_METRICS_H_

// The image-quality metrics of image reconstructions (method.md section 6), beside the MSE:
//   PSNR = 10 log10(range^2 / MSE) per image, in dB;
//   SSIM (Wang, Bovik, Sheikh and Simoncelli 2004): local means, variances and covariance under
//   an 11 x 11 Gaussian window of standard deviation 1.5, C1 = (0.01 range)^2,
//   C2 = (0.03 range)^2, the SSIM map averaged over the window positions inside the image
//   ("valid", as the authors' reference code). On images smaller than 11 pixels the window is cut
//   to the largest odd size that fits.
// `range` is the data range of the images (1 for [0, 1] images).

#include <ATen/core/Tensor.h>

#include "absl/status/statusor.h"

namespace invnet {

// Per image PSNR [N] of estimates against references, both [N, H, W] (float64 result). An image
// equal to its reference has PSNR +inf.
absl::StatusOr<at::Tensor> Psnr(const at::Tensor& estimate, const at::Tensor& reference,
                                double range);
// Per image SSIM [N] in [-1, 1], both [N, H, W].
absl::StatusOr<at::Tensor> Ssim(const at::Tensor& estimate, const at::Tensor& reference,
                                double range);

}  // namespace invnet

#endif  // INVNET_MODELS_IMAGE_METRICS_H_
