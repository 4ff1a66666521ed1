#ifndef INVNET_MODELS_PHANTOMS_H_
#define INVNET_MODELS_PHANTOMS_H_

// Image data made offline (method.md section 6): the Shepp-Logan phantom and seeded random-ellipse
// phantoms, the test images of the CT literature, rasterised at any size.
//
// Geometry: the image covers [-1, 1]^2 with pixel centres at -1 + (2 i + 1) / size; column index
// grows with x, row index shrinks with y (row 0 is the top, y = 1 - 1 / size), as images are
// displayed. An ellipse (intensity A, half-axes a along its own x and b along its own y, centre
// (x0, y0), rotated counter-clockwise by theta) adds A to every pixel centre inside it.

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"

namespace invnet {

struct Ellipse {
  double intensity = 0;
  double half_axis_x = 0, half_axis_y = 0;
  double centre_x = 0, centre_y = 0;
  double angle = 0;  // radians, counter-clockwise
};

// The sum of the ellipses' indicator functions times their intensities, [size, size] float64.
at::Tensor RasteriseEllipses(const std::vector<Ellipse>& ellipses, int64_t size);

// The modified Shepp-Logan phantom (Toft's intensities, values in [0, 1]; the classic one's
// contrast of 0.02 is invisible in a picture), [size, size].
at::Tensor SheppLogan(int64_t size);

// Random-ellipse phantoms: per image a Poisson(mean_count) number of ellipses (at least one),
// centres uniform in the disc of radius 0.6, half-axes uniform in [0.05, 0.4], angles uniform,
// intensities uniform in [0.1, 1]; the sum clipped to [0, 1]. `count` images, [count, size, size],
// deterministic for a generator's seed.
struct RandomEllipsesSpec {
  int64_t size = 64;
  double mean_count = 6.0;
};
absl::StatusOr<at::Tensor> RandomEllipsePhantoms(const RandomEllipsesSpec& spec, int64_t count,
                                                 at::Generator generator);

}  // namespace invnet

#endif  // INVNET_MODELS_PHANTOMS_H_
