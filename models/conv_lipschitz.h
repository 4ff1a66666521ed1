#ifndef INVNET_MODELS_CONV_LIPSCHITZ_H_
#define INVNET_MODELS_CONV_LIPSCHITZ_H_

// Certified operator norms of the 2-D convolutions of convolutional iResNet blocks (images,
// method.md section 6), the convolutional counterpart of TightSpectralNorm (iresnet.h).
//
// The layer is a stride-1 cross-correlation with a kernel K [out, in, kh, kw] on signals
// [in, H, W], padded to keep the size ("same": kh - 1 rows split as torch does), either
// circularly or with zeros.
//
// Circular padding: the operator is block-circulant, diagonalised by the 2-D DFT. Its singular
// values are exactly those of the out x in matrices M(u, v) = sum_{p,q} K[:, :, p, q]
// e^(-2 pi i (u p / H + v q / W)), one per frequency (u, v) (Sedghi, Gupta and Long, "The
// singular values of convolutional layers", ICLR 2019). The padding offset only multiplies M(u, v)
// by a unit phase, and a kernel larger than the grid wraps (its taps add modulo H, W), so the
// kernel placed at (p mod H, q mod W) gives the same values.
//
// Zero padding: the layer is R C E, where E embeds the image in a grid enlarged by the kernel
// (H + kh - 1, W + kw - 1) with zeros, C is the circular convolution there (no tap wraps onto a
// kept output) and R keeps the H x W outputs. ||E|| = ||R|| = 1, so ||layer|| <= ||C||: the same
// DFT computation on the enlarged grid certifies it (an upper bound, not the exact norm).
//
// Unlike a flattened-kernel spectral norm (pytorch#99149) or a power iteration on an unpadded
// convolution, both are true upper bounds of the padded layer's norm, including the rounding of
// the float64 FFT and SVD (a margin of about 1e-12 relative).

#include <ATen/core/Tensor.h>

#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace invnet {

enum class ConvPadding { kCircular, kZero };

absl::string_view ConvPaddingName(ConvPadding padding);
absl::StatusOr<ConvPadding> ParseConvPadding(absl::string_view name);

// The DFT grid whose per-frequency matrices bound the layer on H x W images: H x W for circular
// padding, (H + kh - 1) x (W + kw - 1) for zero padding.
struct ConvGrid {
  int64_t height = 0;
  int64_t width = 0;
};
ConvGrid CertificationGrid(int64_t kernel_height, int64_t kernel_width, int64_t height,
                           int64_t width, ConvPadding padding);

// All singular values of the circular convolution with `kernel` [out, in, kh, kw] on a
// height x width grid, [height * width * min(out, in)], float64, in no particular order. For
// tests and analysis; CertifiedConvNorm is the certificate.
at::Tensor CircularConvSingularValues(const at::Tensor& kernel, int64_t height, int64_t width);

// A true upper bound of the operator norm of the layer (kernel [out, in, kh, kw], any floating
// dtype) on [in, height, width] signals with `padding`, rounding included. INVALID_ARGUMENT for a
// kernel that is not 4-D, an empty one, or a grid that is not positive.
absl::StatusOr<double> CertifiedConvNorm(const at::Tensor& kernel, int64_t height, int64_t width,
                                         ConvPadding padding);

// The padded layer itself, x [N, in, H, W] -> [N, out, H, W], and its exact adjoint (the
// transpose of the same matrix), for odd kernels whose half-width (k - 1) / 2 is below H and W
// (callers validate: the convolutional block's config). Any floating dtype; differentiable.
at::Tensor PaddedConv(const at::Tensor& x, const at::Tensor& kernel, ConvPadding padding);
at::Tensor PaddedConvAdjoint(const at::Tensor& y, const at::Tensor& kernel, ConvPadding padding);

// `iterations` power-iteration steps on the padded layer L (L^T L v, normalised) from the
// persistent right vector `v` [1, in, H, W] (updated in place; an all-zero v, as a new layer
// allocates it, starts from a seeded random one), returning the estimate ||L v|| <= ||L||. Training
// normalises with this estimate, as dense layers do; it is never a certificate (CertifiedConvNorm
// is).
double ConvPowerIteration(const at::Tensor& kernel, ConvPadding padding, at::Tensor& v,
                          int iterations);

}  // namespace invnet

#endif  // INVNET_MODELS_CONV_LIPSCHITZ_H_
