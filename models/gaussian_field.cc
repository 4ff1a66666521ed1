#include "models/gaussian_field.h"

#include <ATen/ATen.h>

#include <cmath>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "models/torch_status.h"

namespace invnet {
namespace {

constexpr int64_t kMaxSide = 4096;
constexpr double kTwoPi = 6.283185307179586;

// |k|^2 on the grid, k = 2 pi fftfreq in radians per pixel, [H, W] float64.
at::Tensor SquaredFrequencies(int64_t height, int64_t width) {
  at::TensorOptions f64 = at::TensorOptions().dtype(at::kDouble);
  at::Tensor ku = kTwoPi * at::fft_fftfreq(height, 1.0, f64);
  at::Tensor kv = kTwoPi * at::fft_fftfreq(width, 1.0, f64);
  return ku.pow(2).unsqueeze(1) + kv.pow(2).unsqueeze(0);
}

at::Tensor UnitaryDft(const at::Tensor& images) {  // [..., H, W] real or complex
  return at::fft_fft2(images, c10::nullopt, {-2, -1}, "ortho");
}
at::Tensor UnitaryInverseDftReal(const at::Tensor& spectra) {
  return at::real(at::fft_ifft2(spectra, c10::nullopt, {-2, -1}, "ortho"));
}

absl::Status ValidateField(const GaussianFieldSpec& field, size_t k) {
  const std::string name = absl::StrCat("prior.fields[", k, "]");
  if (!std::isfinite(field.mean)) {
    return absl::InvalidArgumentError(absl::StrCat(name, ".mean: must be finite"));
  }
  if (!(field.stddev > 0) || !std::isfinite(field.stddev)) {
    return absl::InvalidArgumentError(absl::StrCat(name, ".stddev: must be positive"));
  }
  if (!(field.correlation_length > 0) || !std::isfinite(field.correlation_length)) {
    return absl::InvalidArgumentError(absl::StrCat(name, ".correlation_length: must be positive"));
  }
  if (!(field.smoothness > 0) || !std::isfinite(field.smoothness)) {
    return absl::InvalidArgumentError(absl::StrCat(name, ".smoothness: must be positive"));
  }
  return absl::OkStatus();
}

}  // namespace

at::Tensor PeriodicBlurTransfer(const at::Tensor& kernel, int64_t height, int64_t width) {
  at::NoGradGuard no_grad;
  at::Tensor k = kernel.detach().to(at::kDouble);
  const int64_t cp = (k.size(0) - 1) / 2, cq = (k.size(1) - 1) / 2;
  // (A x)_(i,j) = sum_pq K[p, q] x[i + p - cp, j + q - cq] is a circular convolution with the
  // flipped kernel h[s, t] = K[cp - s, cq - t], whose unnormalised DFT is A's eigenvalues.
  at::Tensor grid = at::zeros({height, width}, k.options());
  for (int64_t p = 0; p < k.size(0); ++p) {
    for (int64_t q = 0; q < k.size(1); ++q) {
      const int64_t s = (((cp - p) % height) + height) % height;
      const int64_t t = (((cq - q) % width) + width) % width;
      grid[s][t] += k[p][q];
    }
  }
  return at::fft_fft2(grid);
}

at::Tensor ApplyPeriodicBlur(const at::Tensor& transfer, const at::Tensor& x) {
  const int64_t height = transfer.size(0), width = transfer.size(1);
  at::Tensor images = x.to(at::kDouble).reshape({-1, height, width});
  at::Tensor blurred = at::real(at::fft_ifft2(transfer * at::fft_fft2(images)));
  return blurred.reshape({-1, height * width}).to(x.scalar_type());
}

at::Tensor GaussianKernel2d(double sigma, int64_t size) {
  at::Tensor offsets = at::arange(size, at::kDouble) - static_cast<double>((size - 1) / 2);
  at::Tensor taps = at::exp(-offsets.pow(2) / (2.0 * sigma * sigma));
  at::Tensor kernel = taps.unsqueeze(1) * taps.unsqueeze(0);
  return kernel / kernel.sum();
}

absl::StatusOr<std::unique_ptr<GaussianFieldMixture>> GaussianFieldMixture::Create(
    const GaussianFieldMixtureSpec& spec) {
  if (spec.height < 1 || spec.height > kMaxSide || spec.width < 1 || spec.width > kMaxSide) {
    return absl::InvalidArgumentError(absl::StrCat("prior.height, prior.width: must be in [1, ",
                                                   kMaxSide, "], got ", spec.height, " x ",
                                                   spec.width));
  }
  if (spec.fields.empty() || spec.weights.size() != spec.fields.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("prior.weights: need one weight per field (>= 1), got ", spec.weights.size(),
                     " weights for ", spec.fields.size(), " fields"));
  }
  double total = 0;
  for (size_t k = 0; k < spec.weights.size(); ++k) {
    if (!(spec.weights[k] > 0) || !std::isfinite(spec.weights[k])) {
      return absl::InvalidArgumentError(absl::StrCat("prior.weights[", k, "]: must be positive"));
    }
    total += spec.weights[k];
  }
  if (std::abs(total - 1.0) > 1e-6) {
    return absl::InvalidArgumentError(absl::StrCat("prior.weights: must sum to 1, sum to ", total));
  }
  for (size_t k = 0; k < spec.fields.size(); ++k) {
    if (absl::Status s = ValidateField(spec.fields[k], k); !s.ok()) return s;
  }
  return GuardTorchOr<std::unique_ptr<GaussianFieldMixture>>(
      "GaussianFieldMixture::Create",
      [&]() -> absl::StatusOr<std::unique_ptr<GaussianFieldMixture>> {
        std::unique_ptr<GaussianFieldMixture> mixture(new GaussianFieldMixture());
        mixture->spec_ = spec;
        at::Tensor k2 = SquaredFrequencies(spec.height, spec.width);
        for (const GaussianFieldSpec& field : spec.fields) {
          const double length2 = field.correlation_length * field.correlation_length;
          at::Tensor raw = at::pow(1.0 + k2 * length2, -field.smoothness);
          // A pixel's variance under S = F* diag(s) F is mean_k s(k).
          mixture->spectra_.push_back(raw * (field.stddev * field.stddev / raw.mean()));
        }
        return mixture;
      });
}

at::Tensor GaussianFieldMixture::Sample(int64_t count, at::Generator generator) const {
  at::NoGradGuard no_grad;
  const int64_t h = spec_.height, w = spec_.width;
  at::Tensor weights = at::tensor(spec_.weights, at::kDouble);
  at::Tensor component = at::multinomial(weights, count, /*replacement=*/true, generator);
  at::Tensor white = at::randn({count, h, w}, generator, at::kDouble);
  at::Tensor spectrum = at::stack(spectra_).index_select(0, component);  // [count, H, W]
  at::Tensor means = at::empty({num_components()}, at::kDouble);
  for (int64_t k = 0; k < num_components(); ++k) means[k] = spec_.fields[k].mean;
  // F* diag(sqrt s) F eta has covariance F* diag(s) F; s is symmetric in k, so it is real.
  at::Tensor x = UnitaryInverseDftReal(at::sqrt(spectrum) * UnitaryDft(white));
  x += means.index_select(0, component).view({count, 1, 1});
  return x.reshape({count, h * w});
}

at::Tensor GaussianFieldMixture::DenseCovariance(int64_t k) const {
  const int64_t n = num_pixels();
  at::Tensor basis = at::eye(n, at::kDouble).view({n, spec_.height, spec_.width});
  return UnitaryInverseDftReal(spectra_[k] * UnitaryDft(basis)).reshape({n, n});
}

absl::StatusOr<GaussianFieldPosterior> PeriodicBlurPosterior(const GaussianFieldMixture& prior,
                                                             const at::Tensor& transfer,
                                                             double noise_level,
                                                             const at::Tensor& y) {
  const int64_t h = prior.spec().height, w = prior.spec().width;
  if (!transfer.defined() || transfer.dim() != 2 || transfer.size(0) != h ||
      transfer.size(1) != w) {
    return absl::InvalidArgumentError(
        absl::StrCat("operator: the blur's transfer function must be [", h, ", ", w, "]"));
  }
  if (!(noise_level > 0) || !std::isfinite(noise_level)) {
    return absl::InvalidArgumentError("noise_level: must be positive");
  }
  if (!y.defined() || y.dim() != 2 || y.size(1) != h * w) {
    return absl::InvalidArgumentError(
        absl::StrCat("measurements: must be [batch, ", h * w, "] (", h, " x ", w, " images)"));
  }
  return GuardTorchOr<GaussianFieldPosterior>(
      "PeriodicBlurPosterior", [&]() -> absl::StatusOr<GaussianFieldPosterior> {
        at::NoGradGuard no_grad;
        const int64_t batch = y.size(0), n = h * w;
        const double delta2 = noise_level * noise_level;
        at::Tensor a = transfer.to(at::kComplexDouble);
        at::Tensor a2 = at::real(a * at::conj(a));
        at::Tensor images = y.to(at::kDouble).reshape({batch, h, w});
        // A blurs a constant image c to a(0) c.
        const double a0 = at::real(a[0][0]).item<double>();
        std::vector<at::Tensor> means, log_evidence;
        std::vector<double> variances;
        for (int64_t k = 0; k < prior.num_components(); ++k) {
          const GaussianFieldSpec& field = prior.spec().fields[k];
          const at::Tensor& s = prior.spectrum(k);
          at::Tensor c = a2 * s + delta2;
          at::Tensor residual = UnitaryDft(images - a0 * field.mean);
          at::Tensor update = UnitaryInverseDftReal(s * at::conj(a) * residual / c);
          means.push_back((update + field.mean).reshape({batch, n}));
          variances.push_back((s * delta2 / c).mean().item<double>());
          at::Tensor quadratic = (at::real(residual * at::conj(residual)) / c).sum({1, 2});
          const double log_det = at::log(kTwoPi * c).sum().item<double>();
          log_evidence.push_back(std::log(prior.spec().weights[k]) - 0.5 * (quadratic + log_det));
        }
        GaussianFieldPosterior posterior;
        posterior.weights = at::softmax(at::stack(log_evidence, 1), 1);  // [batch, K]
        at::Tensor stacked = at::stack(means, 1);                        // [batch, K, n]
        at::Tensor wk = posterior.weights.unsqueeze(2);
        posterior.mean = (wk * stacked).sum(1);
        at::Tensor v = at::tensor(variances, at::kDouble).view({1, -1, 1});
        at::Tensor second_moment = (wk * (v + stacked.pow(2))).sum(1);
        posterior.stddev = at::sqrt(at::clamp_min(second_moment - posterior.mean.pow(2), 0.0));
        return posterior;
      });
}

}  // namespace invnet
