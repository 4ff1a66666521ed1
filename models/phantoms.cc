#include "models/phantoms.h"

#include <ATen/ATen.h>

#include <cmath>

#include "absl/strings/str_cat.h"
#include "models/torch_status.h"

namespace invnet {
namespace {

constexpr double kPi = 3.141592653589793;
constexpr int64_t kMaxSize = 4096;
constexpr int64_t kMaxImages = 1 << 20;

// Pixel-centre coordinates: x per column, y per row (row 0 at the top), each [size].
at::Tensor PixelCentres(int64_t size) {
  return -1.0 + (2.0 * at::arange(size, at::kDouble) + 1.0) / static_cast<double>(size);
}

}  // namespace

at::Tensor RasteriseEllipses(const std::vector<Ellipse>& ellipses, int64_t size) {
  at::NoGradGuard no_grad;
  at::Tensor x = PixelCentres(size).unsqueeze(0);          // [1, size]: columns
  at::Tensor y = PixelCentres(size).flip(0).unsqueeze(1);  // [size, 1]: rows, top first
  at::Tensor image = at::zeros({size, size}, at::kDouble);
  for (const Ellipse& e : ellipses) {
    const double c = std::cos(e.angle), s = std::sin(e.angle);
    // The pixel in the ellipse's own frame: rotate (x - x0, y - y0) by -angle.
    at::Tensor u = c * (x - e.centre_x) + s * (y - e.centre_y);
    at::Tensor v = -s * (x - e.centre_x) + c * (y - e.centre_y);
    at::Tensor inside =
        (u / e.half_axis_x).pow(2) + (v / e.half_axis_y).pow(2) <= 1.0;  // [size, size]
    image += e.intensity * inside.to(at::kDouble);
  }
  return image;
}

at::Tensor SheppLogan(int64_t size) {
  // Toft's modified Shepp-Logan table: intensity, half-axes, centre, angle in degrees.
  static constexpr double kTable[10][6] = {
      {1.0, 0.69, 0.92, 0.0, 0.0, 0.0},      {-0.8, 0.6624, 0.874, 0.0, -0.0184, 0.0},
      {-0.2, 0.11, 0.31, 0.22, 0.0, -18.0},  {-0.2, 0.16, 0.41, -0.22, 0.0, 18.0},
      {0.1, 0.21, 0.25, 0.0, 0.35, 0.0},     {0.1, 0.046, 0.046, 0.0, 0.1, 0.0},
      {0.1, 0.046, 0.046, 0.0, -0.1, 0.0},   {0.1, 0.046, 0.023, -0.08, -0.605, 0.0},
      {0.1, 0.023, 0.023, 0.0, -0.606, 0.0}, {0.1, 0.023, 0.046, 0.06, -0.605, 0.0}};
  std::vector<Ellipse> ellipses;
  for (const auto& row : kTable) {
    ellipses.push_back({row[0], row[1], row[2], row[3], row[4], row[5] * kPi / 180.0});
  }
  return RasteriseEllipses(ellipses, size);
}

absl::StatusOr<at::Tensor> RandomEllipsePhantoms(const RandomEllipsesSpec& spec, int64_t count,
                                                 at::Generator generator) {
  if (spec.size < 1 || spec.size > kMaxSize) {
    return absl::InvalidArgumentError(
        absl::StrCat("phantoms.size: must be in [1, ", kMaxSize, "], got ", spec.size));
  }
  if (!(spec.mean_count > 0) || spec.mean_count > 100) {
    return absl::InvalidArgumentError(
        absl::StrCat("phantoms.mean_count: must be in (0, 100], got ", spec.mean_count));
  }
  if (count < 0 || count > kMaxImages) {
    return absl::InvalidArgumentError(
        absl::StrCat("phantoms: count must be in [0, ", kMaxImages, "], got ", count));
  }
  return GuardTorchOr<at::Tensor>("RandomEllipsePhantoms", [&]() -> absl::StatusOr<at::Tensor> {
    at::NoGradGuard no_grad;
    auto uniform = [&](double lo, double hi) {
      return lo + (hi - lo) * at::rand({1}, generator, at::kDouble).item<double>();
    };
    at::Tensor images = at::empty({count, spec.size, spec.size}, at::kDouble);
    for (int64_t i = 0; i < count; ++i) {
      const int64_t n = std::max<int64_t>(
          1, at::poisson(at::full({1}, spec.mean_count, at::kDouble), generator).item<double>());
      std::vector<Ellipse> ellipses;
      for (int64_t k = 0; k < n; ++k) {
        // Uniform in the disc: radius sqrt(u) * 0.6.
        const double radius = 0.6 * std::sqrt(uniform(0, 1));
        const double direction = uniform(0, 2 * kPi);
        Ellipse e;
        e.intensity = uniform(0.1, 1.0);
        e.half_axis_x = uniform(0.05, 0.4);
        e.half_axis_y = uniform(0.05, 0.4);
        e.centre_x = radius * std::cos(direction);
        e.centre_y = radius * std::sin(direction);
        e.angle = uniform(0, kPi);
        ellipses.push_back(e);
      }
      images[i] = RasteriseEllipses(ellipses, spec.size).clamp(0.0, 1.0);
    }
    return images;
  });
}

}  // namespace invnet
