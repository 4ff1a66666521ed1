#ifndef INVNET_MODELS_GAUSSIAN_FIELD_H_
#define INVNET_MODELS_GAUSSIAN_FIELD_H_

// Stationary Gaussian-field priors on periodic H x W images and their mixtures, with the exact
// Bayes references for a periodic 2-D blur (method.md section 6): the image-scale counterpart of
// priors.h / estimators.h, where those would need n x n matrices (n = H W = 4096 at 64 x 64).
//
// A field has a constant mean and the circulant covariance S = F* diag(s) F (F the unitary 2-D
// DFT) with the power spectrum
//     s(k) = c (1 + |k|^2 / l^2)^(-nu),    |k|^2 = k_u^2 + k_v^2, k = 2 pi fftfreq (rad / pixel),
// l = 1 / correlation_length, and c chosen so that every pixel's variance, mean_k s(k), is
// stddev^2. A periodic blur A = F* diag(a) F (a the DFT of the kernel placed on the grid) is
// diagonal in the same basis, so per component everything is a per-frequency scalar:
//     C = A S A^T + delta^2 I:   c(k) = |a(k)|^2 s(k) + delta^2
//     posterior mean:            m^(k) = mu^(k) + s(k) conj(a(k)) r^(k) / c(k),  r = y - A mu
//     posterior variance:        v = mean_k s(k) delta^2 / c(k)   (the same at every pixel)
//     evidence:                  log N(y; A mu, C) = -1/2 sum_k (|r^(k)|^2 / c(k) + log 2 pi c(k))
// and for a mixture the component weights w_k(y) follow from the evidences as in priors.h:
// posterior mean sum_k w_k m_k, posterior variance sum_k w_k (v_k + m_k^2) - mean^2 per pixel.
// (The MAP of one field is its posterior mean; a mixture's MAP is not closed-form.)
//
// Images are flattened row-major, [batch, H * W], so they meet the vector code (evaluation.h,
// BayesEstimators) unchanged. All computations are in float64.

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"

namespace invnet {

struct GaussianFieldSpec {
  double mean = 0.0;                // constant mean level
  double stddev = 1.0;              // every pixel's prior standard deviation
  double correlation_length = 4.0;  // 1 / l, in pixels
  double smoothness = 2.0;          // nu > 0: the spectrum's decay exponent
};

struct GaussianFieldMixtureSpec {
  int64_t height = 0;
  int64_t width = 0;
  std::vector<double> weights;            // K >= 1, positive, summing to 1
  std::vector<GaussianFieldSpec> fields;  // K components
};

// The DFT of a 2-D kernel [kh, kw] (centre at ((kh - 1) / 2, (kw - 1) / 2)) placed on the
// height x width grid: the eigenvalues a(k) of the periodic blur, complex [H, W]. Taps of a kernel
// larger than the grid wrap.
at::Tensor PeriodicBlurTransfer(const at::Tensor& kernel, int64_t height, int64_t width);
// A x for the periodic blur with `transfer` [H, W], x [batch, H * W] (real) -> [batch, H * W].
at::Tensor ApplyPeriodicBlur(const at::Tensor& transfer, const at::Tensor& x);
// The normalised 2-D Gaussian kernel exp(-(p^2 + q^2) / (2 sigma^2)), size x size taps.
at::Tensor GaussianKernel2d(double sigma, int64_t size);

class GaussianFieldMixture {
 public:
  // INVALID_ARGUMENT naming the field for a bad spec (sizes in [1, 4096] per side, weights,
  // positive stddev, correlation length and smoothness, finite means).
  static absl::StatusOr<std::unique_ptr<GaussianFieldMixture>> Create(
      const GaussianFieldMixtureSpec& spec);

  const GaussianFieldMixtureSpec& spec() const { return spec_; }
  int64_t num_pixels() const { return spec_.height * spec_.width; }
  int64_t num_components() const { return static_cast<int64_t>(spec_.fields.size()); }

  // Component k's power spectrum s_k [H, W] (float64).
  const at::Tensor& spectrum(int64_t k) const { return spectra_[k]; }
  // count samples [count, H * W] (float64).
  at::Tensor Sample(int64_t count, at::Generator generator) const;
  // Component k's covariance as a dense [n, n] matrix (tests and small grids only).
  at::Tensor DenseCovariance(int64_t k) const;

 private:
  GaussianFieldMixture() = default;
  GaussianFieldMixtureSpec spec_;
  std::vector<at::Tensor> spectra_;
};

struct GaussianFieldPosterior {
  at::Tensor mean;     // [batch, H * W]
  at::Tensor stddev;   // [batch, H * W]
  at::Tensor weights;  // [batch, K]: the posterior weights of the components
};

// The exact posterior of x given y = A x + delta eta for the periodic blur with `transfer`
// [H, W] (PeriodicBlurTransfer) and the prior, y [batch, H * W]. INVALID_ARGUMENT for a transfer
// of the wrong shape, delta <= 0 or y of the wrong shape.
absl::StatusOr<GaussianFieldPosterior> PeriodicBlurPosterior(const GaussianFieldMixture& prior,
                                                             const at::Tensor& transfer,
                                                             double noise_level,
                                                             const at::Tensor& y);

}  // namespace invnet

#endif  // INVNET_MODELS_GAUSSIAN_FIELD_H_
