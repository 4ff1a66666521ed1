#include "tests/testing/gradients.h"

#include <cmath>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include "gtest/gtest.h"

namespace invnet::testing {

void ExpectParameterGradientsMatch(IResNet& net, const std::function<at::Tensor(IResNet&)>& scalar,
                                   double tolerance, int stride) {
  std::vector<at::Tensor> params = net.Parameters();
  for (at::Tensor& p : params) p.mutable_grad() = at::Tensor();
  scalar(net).backward();
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(9);
  for (size_t i = 0; i < params.size(); i += stride) {
    at::Tensor flat = params[i].view({-1});
    const int64_t index = at::randint(flat.numel(), {1}, gen, at::kLong).item<int64_t>();
    const double h = 1e-6;
    const double saved = flat[index].item<double>();
    double plus, minus;
    {
      at::NoGradGuard no_grad;
      flat[index] = saved + h;
      plus = scalar(net).item<double>();
      flat[index] = saved - h;
      minus = scalar(net).item<double>();
      flat[index] = saved;
    }
    const double fd = (plus - minus) / (2 * h);
    // No gradient at all means the scalar does not depend on the parameter: zero.
    const double ad =
        params[i].grad().defined() ? params[i].grad().view({-1})[index].item<double>() : 0.0;
    EXPECT_NEAR(ad, fd, tolerance * std::max(1.0, std::abs(fd))) << "parameter " << i;
  }
}

}  // namespace invnet::testing
