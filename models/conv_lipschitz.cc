#include "models/conv_lipschitz.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "models/torch_status.h"

namespace invnet {
namespace {

// The kernel [out, in, kh, kw] as float64 on the height x width grid, tap (p, q) at
// (p mod height, q mod width), taps that land on one cell added (a kernel larger than the grid
// wraps, as the circular operator does).
at::Tensor KernelOnGrid(const at::Tensor& kernel, int64_t height, int64_t width) {
  at::Tensor k = kernel.detach().to(at::kDouble);
  at::Tensor grid = at::zeros({k.size(0), k.size(1), height, width}, k.options());
  for (int64_t p = 0; p < k.size(2); ++p) {
    for (int64_t q = 0; q < k.size(3); ++q) {
      grid.select(2, p % height).select(2, q % width) += k.select(2, p).select(2, q);
    }
  }
  return grid;
}

}  // namespace

absl::string_view ConvPaddingName(ConvPadding padding) {
  return padding == ConvPadding::kCircular ? "circular" : "zero";
}

absl::StatusOr<ConvPadding> ParseConvPadding(absl::string_view name) {
  if (name == "circular") return ConvPadding::kCircular;
  if (name == "zero") return ConvPadding::kZero;
  return absl::InvalidArgumentError(
      absl::StrCat("padding: '", name, "' is not one of circular, zero"));
}

ConvGrid CertificationGrid(int64_t kernel_height, int64_t kernel_width, int64_t height,
                           int64_t width, ConvPadding padding) {
  if (padding == ConvPadding::kCircular) return {height, width};
  return {height + kernel_height - 1, width + kernel_width - 1};
}

at::Tensor CircularConvSingularValues(const at::Tensor& kernel, int64_t height, int64_t width) {
  at::NoGradGuard no_grad;
  at::Tensor per_frequency =
      at::fft_fft2(KernelOnGrid(kernel, height, width)).permute({2, 3, 0, 1});  // [H, W, o, i]
  return at::linalg_svdvals(per_frequency).flatten();
}

absl::StatusOr<double> CertifiedConvNorm(const at::Tensor& kernel, int64_t height, int64_t width,
                                         ConvPadding padding) {
  if (!kernel.defined() || kernel.dim() != 4 || kernel.numel() == 0 ||
      !at::isFloatingType(kernel.scalar_type())) {
    return absl::InvalidArgumentError(
        "conv kernel: must be a non-empty floating [out, in, kh, kw] tensor");
  }
  if (height <= 0 || width <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("conv grid: height and width must be positive, got ", height, " x ", width));
  }
  return GuardTorchOr<double>("CertifiedConvNorm", [&]() -> absl::StatusOr<double> {
    at::NoGradGuard no_grad;
    const ConvGrid grid = CertificationGrid(kernel.size(2), kernel.size(3), height, width, padding);
    // A real kernel's DFT is conjugate-symmetric, M(-u, -v) = conj(M(u, v)), with the same
    // singular values: the half spectrum of rfft2 holds every one of them.
    at::Tensor per_frequency =
        at::fft_rfft2(KernelOnGrid(kernel, grid.height, grid.width)).permute({2, 3, 0, 1});
    const double largest = at::linalg_svdvals(per_frequency).max().item<double>();
    // Rounding. The float64 FFT is normwise stable: per (out, in) pair its error is at most
    // about 5 log2(N) eps times the exact transform's 2-norm, which by Parseval is sqrt(N) ||K||_F
    // (N = grid cells); that bounds every frequency's matrix error in the Frobenius norm, hence
    // in the 2-norm. The SVD is backward stable (TightSpectralNorm's margin, iresnet.cc), on
    // matrices with ||M(u, v)||_F <= sum_pq ||K_pq||_F <= sqrt(kh kw) ||K||_F.
    const double eps = std::numeric_limits<double>::epsilon();
    const double cells = static_cast<double>(grid.height * grid.width);
    const double frobenius = kernel.detach().to(at::kDouble).norm().item<double>();
    const double fft_error =
        5.0 * std::ceil(std::log2(cells + 1.0)) * eps * std::sqrt(cells) * frobenius;
    const double svd_error = 8.0 * static_cast<double>(kernel.size(0) + kernel.size(1)) * eps *
                             std::sqrt(static_cast<double>(kernel.size(2) * kernel.size(3))) *
                             frobenius;
    return largest + fft_error + svd_error;
  });
}

at::Tensor PaddedConv(const at::Tensor& x, const at::Tensor& kernel, ConvPadding padding) {
  const int64_t ph = (kernel.size(2) - 1) / 2, pw = (kernel.size(3) - 1) / 2;
  if (padding == ConvPadding::kZero) return at::conv2d(x, kernel, {}, 1, {ph, pw});
  return at::conv2d(at::pad(x, {pw, pw, ph, ph}, "circular"), kernel);
}

at::Tensor PaddedConvAdjoint(const at::Tensor& y, const at::Tensor& kernel, ConvPadding padding) {
  const int64_t ph = (kernel.size(2) - 1) / 2, pw = (kernel.size(3) - 1) / 2;
  if (padding == ConvPadding::kZero) return at::conv_transpose2d(y, kernel, {}, 1, {ph, pw});
  // The transpose of "pad circularly, then a valid convolution": the full transposed convolution
  // on the padded grid, whose border rows and columns fold back onto the cells they copied (the
  // top ph rows were copies of the bottom ph, the bottom ones of the top ones).
  at::Tensor z = at::conv_transpose2d(y, kernel);  // [N, in, H + 2 ph, W + 2 pw]
  const int64_t h = z.size(2) - 2 * ph, w = z.size(3) - 2 * pw;
  at::Tensor rows = z.narrow(2, ph, h).clone();
  if (ph > 0) {
    rows.narrow(2, h - ph, ph) += z.narrow(2, 0, ph);
    rows.narrow(2, 0, ph) += z.narrow(2, ph + h, ph);
  }
  at::Tensor x = rows.narrow(3, pw, w).clone();
  if (pw > 0) {
    x.narrow(3, w - pw, pw) += rows.narrow(3, 0, pw);
    x.narrow(3, 0, pw) += rows.narrow(3, pw + w, pw);
  }
  return x;
}

double ConvPowerIteration(const at::Tensor& kernel, ConvPadding padding, at::Tensor& v,
                          int iterations) {
  at::NoGradGuard no_grad;
  at::Tensor k = kernel.detach();
  if (v.norm().item<double>() == 0) {
    v.copy_(at::randn(v.sizes(), at::make_generator<at::CPUGeneratorImpl>(0x5eed), k.options()));
  }
  v /= v.norm();
  double estimate = 0;
  for (int i = 0; i < iterations; ++i) {
    at::Tensor lv = PaddedConv(v, k, padding);
    estimate = lv.norm().item<double>();
    at::Tensor next = PaddedConvAdjoint(lv, k, padding);
    const double norm = next.norm().item<double>();
    if (norm == 0) break;
    v.copy_(next / norm);
  }
  return PaddedConv(v, k, padding).norm().item<double>();
}

}  // namespace invnet
