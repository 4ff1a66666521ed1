#include "tests/testing/networks.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

namespace invnet::testing {

std::unique_ptr<IResNet> MakeWorstCaseLinearNetwork(int64_t dim, int64_t num_blocks, double c,
                                                    at::ScalarType dtype, uint64_t seed) {
  IResNetConfig config;
  config.dim = dim;
  config.num_blocks = num_blocks;
  config.layers_per_block = 1;
  config.hidden_width = 1;
  config.lipschitz_coeff = c;
  config.seed = seed;
  auto net = IResNet::Create(config, dtype).value();
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed + 1000);
  auto state = net->NamedState();
  std::vector<std::pair<std::string, at::Tensor>> replaced;
  for (int64_t k = 0; k < num_blocks; ++k) {
    at::Tensor q = std::get<0>(at::linalg_qr(at::randn({dim, dim}, gen, at::kDouble)));
    at::Tensor d = at::empty({dim}, at::kDouble).uniform_(-0.9, 0.9, gen);
    d[0] = -1.0;
    at::Tensor w = c * at::matmul(q * d.unsqueeze(0), q.t());
    at::Tensor b = at::empty({dim}, at::kDouble).uniform_(-0.5, 0.5, gen);
    std::string prefix = "block" + std::to_string(k) + ".layer0.";
    replaced.emplace_back(prefix + "weight", w);
    replaced.emplace_back(prefix + "bias", b);
    replaced.emplace_back(prefix + "u", q.select(1, 0).contiguous());
    replaced.emplace_back(prefix + "v", q.select(1, 0).contiguous());
    replaced.emplace_back(prefix + "sigma", at::scalar_tensor(c, at::kDouble));
  }
  auto status = net->LoadState(replaced);
  if (!status.ok()) return nullptr;
  net->SetTraining(false);
  return net;
}

std::unique_ptr<IResNet> MakeSaturatedNetwork(const IResNetConfig& config, at::ScalarType dtype) {
  auto net = IResNet::Create(config, dtype).value();
  // Scale every raw weight so its sigma is 2, above every layer cap (<= 1): the normalisation
  // then brings each layer exactly to its cap.
  {
    at::NoGradGuard no_grad;
    for (auto& [name, tensor] : net->NamedState()) {
      if (name.size() >= 6 && name.compare(name.size() - 6, 6, "weight") == 0) {
        double sigma = TightSpectralNorm(tensor);
        tensor.mul_(2.0 / sigma);
      }
    }
  }
  net->CalibrateSpectralNorms();
  net->SetTraining(false);
  return net;
}

}  // namespace invnet::testing
