#include "models/iresnet.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <unordered_map>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include "absl/strings/str_cat.h"

namespace invnet {
namespace {

constexpr int64_t kMaxDim = kMaxIResNetDim;
constexpr int64_t kMaxBlocks = 64;
constexpr int64_t kMaxWidth = 4096;
constexpr int64_t kMaxLayers = 8;
// Above this size of the smaller side an SVD gets slow: the calibration takes power iteration and
// the certificate the eigenvalues of the Gram matrix.
constexpr int64_t kExactSvdMaxSide = 512;

struct Layer {
  at::Tensor weight;  // [out, in], requires_grad
  at::Tensor bias;    // [out], requires_grad
  at::Tensor u;       // [out], unit left power-iteration vector
  at::Tensor v;       // [in], unit right power-iteration vector
  at::Tensor sigma;   // 0-dim: the current estimate of sigma_max(weight)
};

at::Tensor Normalized(const at::Tensor& t) { return t / t.norm().clamp_min(1e-30); }

// Top singular triple of `w` (float64 result), exact by SVD for small matrices.
struct SingularTriple {
  double sigma;
  at::Tensor u;
  at::Tensor v;
};

SingularTriple TopSingularTriple(const at::Tensor& w) {
  at::NoGradGuard no_grad;
  at::Tensor w64 = w.detach().to(at::kDouble);
  if (std::min(w64.size(0), w64.size(1)) <= kExactSvdMaxSide) {
    auto [u, s, vh] = at::linalg_svd(w64, /*full_matrices=*/false);
    return {s[0].item<double>(), u.select(1, 0).contiguous(), vh.select(0, 0).contiguous()};
  }
  // Power iteration on W^T W from a fixed start; stops at 1e-7 relative change.
  at::Tensor v = Normalized(at::ones({w64.size(1)}, at::kDouble) +
                            at::arange(w64.size(1), at::kDouble) * 1e-3);
  double sigma = 0.0;
  for (int it = 0; it < 20000; ++it) {
    at::Tensor u = Normalized(at::mv(w64, v));
    v = Normalized(at::mv(w64.t(), u));
    double next = at::dot(u, at::mv(w64, v)).item<double>();
    bool done = it > 10 && std::abs(next - sigma) <= 1e-7 * std::abs(next);
    sigma = next;
    if (done) break;
  }
  at::Tensor u = Normalized(at::mv(w64, v));
  return {sigma, u, v};
}

}  // namespace

double TightSpectralNorm(const at::Tensor& matrix) {
  at::NoGradGuard no_grad;
  at::Tensor w = matrix.detach().to(at::kDouble);
  const int64_t rows = w.size(0);
  const int64_t cols = w.size(1);
  const double frobenius = w.norm().item<double>();
  // LAPACK's SVD and symmetric eigensolver are backward stable: the computed values are exact
  // for a matrix within p(n) * eps * ||W|| (resp. ||G||) of the input, and forming G = W W^T
  // adds at most n * eps * ||W||_F^2. A margin of 8 (rows + cols) * eps * ||W||_F covers both
  // with room to spare (p(n) is a small multiple of n in practice), and stays near 1e-12 relative.
  const double eps = std::numeric_limits<double>::epsilon();
  const double margin = 8.0 * static_cast<double>(rows + cols) * eps * frobenius;
  if (std::min(rows, cols) <= kExactSvdMaxSide) {
    return at::linalg_svdvals(w)[0].item<double>() + margin;
  }
  at::Tensor gram = rows <= cols ? at::matmul(w, w.t()) : at::matmul(w.t(), w);
  const double lambda_max = at::linalg_eigvalsh(gram).max().item<double>();
  return std::sqrt(std::max(0.0, lambda_max)) + margin;
}

absl::string_view LipschitzSplitName(LipschitzSplit split) {
  switch (split) {
    case LipschitzSplit::kGeometric:
      return "geometric";
    case LipschitzSplit::kLastLayer:
      return "last_layer";
    case LipschitzSplit::kEveryLayer:
      return "every_layer";
  }
  return "unknown";
}

absl::StatusOr<LipschitzSplit> ParseLipschitzSplit(absl::string_view name) {
  for (LipschitzSplit split :
       {LipschitzSplit::kGeometric, LipschitzSplit::kLastLayer, LipschitzSplit::kEveryLayer}) {
    if (name == LipschitzSplitName(split)) return split;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "architecture.lipschitz_split: unknown '", name,
      "' (expected geometric, last_layer or every_layer)"));
}

double LayerLipschitzCap(const IResNetConfig& config, int64_t layer) {
  const double c = config.lipschitz_coeff;
  switch (config.lipschitz_split) {
    case LipschitzSplit::kGeometric:
      return std::pow(c, 1.0 / static_cast<double>(config.layers_per_block));
    case LipschitzSplit::kLastLayer:
      return layer + 1 == config.layers_per_block ? c : 1.0;
    case LipschitzSplit::kEveryLayer:
      return c;
  }
  return c;
}

absl::Status ValidateIResNetConfig(const IResNetConfig& config) {
  auto out_of_range = [](absl::string_view field, int64_t value, int64_t lo, int64_t hi) {
    return absl::InvalidArgumentError(absl::StrCat("architecture.", field, ": ", value,
                                                   " is outside [", lo, ", ", hi, "]"));
  };
  if (config.dim < 1 || config.dim > kMaxDim) return out_of_range("dim", config.dim, 1, kMaxDim);
  if (config.num_blocks < 1 || config.num_blocks > kMaxBlocks) {
    return out_of_range("num_blocks", config.num_blocks, 1, kMaxBlocks);
  }
  if (config.hidden_width < 1 || config.hidden_width > kMaxWidth) {
    return out_of_range("hidden_width", config.hidden_width, 1, kMaxWidth);
  }
  if (config.layers_per_block < 1 || config.layers_per_block > kMaxLayers) {
    return out_of_range("layers_per_block", config.layers_per_block, 1, kMaxLayers);
  }
  if (!(config.lipschitz_coeff > 0.0 && config.lipschitz_coeff < 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("architecture.lipschitz_coeff: ", config.lipschitz_coeff,
                     " must lie in (0, 1) for the blocks to be invertible"));
  }
  switch (config.lipschitz_split) {
    case LipschitzSplit::kGeometric:
    case LipschitzSplit::kLastLayer:
    case LipschitzSplit::kEveryLayer:
      return absl::OkStatus();
  }
  return absl::InvalidArgumentError("architecture.lipschitz_split: unknown value");
}

at::Tensor ResidualLinearization::Apply(const at::Tensor& tangents) const {
  TORCH_CHECK(tangents.dim() == 3 && tangents.size(0) == value_.size(0) &&
                  tangents.size(2) == value_.size(1),
              "ResidualLinearization::Apply: tangents must be [batch, p, dim]");
  at::Tensor t = tangents;
  for (size_t l = 0; l < weights_.size(); ++l) {
    t = at::matmul(t, weights_[l].t());  // [batch, p, in] x [in, out] -> [batch, p, out]
    if (l < slopes_.size()) t = t * slopes_[l].unsqueeze(1);
  }
  return t;
}

at::Tensor ResidualLinearization::ApplyTranspose(const at::Tensor& cotangents) const {
  TORCH_CHECK(cotangents.dim() == 3 && cotangents.size(0) == value_.size(0) &&
                  cotangents.size(2) == value_.size(1),
              "ResidualLinearization::ApplyTranspose: cotangents must be [batch, p, dim]");
  at::Tensor t = cotangents;
  for (size_t l = weights_.size(); l-- > 0;) {
    if (l < slopes_.size()) t = t * slopes_[l].unsqueeze(1);
    t = at::matmul(t, weights_[l]);  // [batch, p, out] x [out, in] -> [batch, p, in]
  }
  return t;
}

struct IResNet::Impl {
  IResNetConfig config;
  at::ScalarType dtype = at::kFloat;
  bool training = true;
  std::vector<std::vector<Layer>> blocks;
  std::vector<double> layer_caps;  // c_l for each layer index of a block

  // W * min(1, c_l / sigma). In training mode sigma = u^T W v carries the gradient through W.
  at::Tensor EffectiveWeight(const Layer& layer, size_t l, bool use_training_estimate) const {
    at::Tensor sigma = use_training_estimate ? at::dot(layer.u, at::mv(layer.weight, layer.v))
                                             : layer.sigma;
    return layer.weight / at::clamp_min(sigma / layer_caps[l], 1.0);
  }

  void CheckInput(const at::Tensor& x, const char* what) const {
    TORCH_CHECK(x.dim() == 2 && x.size(1) == config.dim, what, ": expected [batch, ",
                config.dim, "], got ", x.sizes());
    TORCH_CHECK(x.scalar_type() == dtype, what, ": expected dtype ", dtype, ", got ",
                x.scalar_type());
  }

  // Runs block k's MLP on x; records slopes when `slopes` is given.
  at::Tensor RunResidual(int64_t k, const at::Tensor& x, std::vector<at::Tensor>* weights,
                         std::vector<at::Tensor>* slopes) const {
    const std::vector<Layer>& block = blocks[k];
    at::Tensor h = x;
    for (size_t l = 0; l < block.size(); ++l) {
      at::Tensor w = EffectiveWeight(block[l], l, training);
      at::Tensor z = at::linear(h, w, block[l].bias);
      if (weights != nullptr) weights->push_back(w);
      if (l + 1 == block.size()) return z;
      if (slopes != nullptr) slopes->push_back(ActivationSlope(config.activation, z));
      h = ApplyActivation(config.activation, z);
    }
    return h;  // unreachable: a block has at least one layer
  }
};

IResNet::IResNet(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
IResNet::~IResNet() = default;

absl::StatusOr<std::unique_ptr<IResNet>> IResNet::Create(const IResNetConfig& config,
                                                         at::ScalarType dtype) {
  absl::Status valid = ValidateIResNetConfig(config);
  if (!valid.ok()) return valid;
  if (dtype != at::kFloat && dtype != at::kDouble) {
    return absl::InvalidArgumentError("IResNet dtype must be float32 or float64");
  }
  auto impl = std::make_unique<Impl>();
  impl->config = config;
  impl->dtype = dtype;
  for (int64_t l = 0; l < config.layers_per_block; ++l) {
    impl->layer_caps.push_back(LayerLipschitzCap(config, l));
  }
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(config.seed);
  at::NoGradGuard no_grad;
  for (int64_t k = 0; k < config.num_blocks; ++k) {
    std::vector<Layer> block;
    for (int64_t l = 0; l < config.layers_per_block; ++l) {
      int64_t in = l == 0 ? config.dim : config.hidden_width;
      int64_t out = l + 1 == config.layers_per_block ? config.dim : config.hidden_width;
      double bound = 1.0 / std::sqrt(static_cast<double>(in));  // LibTorch's Linear default
      Layer layer;
      layer.weight = at::empty({out, in}, at::kDouble).uniform_(-bound, bound, gen).to(dtype);
      layer.bias = at::empty({out}, at::kDouble).uniform_(-bound, bound, gen).to(dtype);
      layer.u = at::empty({out}, dtype);
      layer.v = at::empty({in}, dtype);
      layer.sigma = at::empty({}, dtype);
      layer.weight.requires_grad_(true);
      layer.bias.requires_grad_(true);
      block.push_back(std::move(layer));
    }
    impl->blocks.push_back(std::move(block));
  }
  std::unique_ptr<IResNet> net(new IResNet(std::move(impl)));
  net->CalibrateSpectralNorms();  // start exactly normalised
  return net;
}

const IResNetConfig& IResNet::config() const { return impl_->config; }
at::ScalarType IResNet::dtype() const { return impl_->dtype; }
void IResNet::SetTraining(bool training) { impl_->training = training; }
bool IResNet::is_training() const { return impl_->training; }

void IResNet::PowerIterationStep() {
  if (!impl_->training) return;  // frozen in evaluation mode: phi must not change
  at::NoGradGuard no_grad;
  for (auto& block : impl_->blocks) {
    for (Layer& layer : block) {
      const at::Tensor& w = layer.weight;
      layer.v.copy_(Normalized(at::mv(w.t(), layer.u)));
      at::Tensor wv = at::mv(w, layer.v);
      layer.u.copy_(Normalized(wv));
      layer.sigma.copy_(at::dot(layer.u, wv));
    }
  }
}

at::Tensor IResNet::Forward(const at::Tensor& x) const {
  impl_->CheckInput(x, "IResNet::Forward");
  at::Tensor h = x;
  for (int64_t k = 0; k < num_blocks(); ++k) {
    h = h + impl_->RunResidual(k, h, nullptr, nullptr);
  }
  return h;
}

at::Tensor IResNet::Residual(int64_t block, const at::Tensor& x) const {
  TORCH_CHECK(block >= 0 && block < num_blocks(), "IResNet::Residual: bad block ", block);
  impl_->CheckInput(x, "IResNet::Residual");
  return impl_->RunResidual(block, x, nullptr, nullptr);
}

ResidualLinearization IResNet::LinearizeResidual(int64_t block, const at::Tensor& x) const {
  TORCH_CHECK(block >= 0 && block < num_blocks(), "IResNet::LinearizeResidual: bad block ",
              block);
  impl_->CheckInput(x, "IResNet::LinearizeResidual");
  ResidualLinearization lin;
  lin.value_ = impl_->RunResidual(block, x, &lin.weights_, &lin.slopes_);
  return lin;
}

std::vector<at::Tensor> IResNet::Parameters() const {
  std::vector<at::Tensor> params;
  for (const auto& block : impl_->blocks) {
    for (const Layer& layer : block) {
      params.push_back(layer.weight);
      params.push_back(layer.bias);
    }
  }
  return params;
}

std::vector<std::pair<std::string, at::Tensor>> IResNet::NamedState() const {
  std::vector<std::pair<std::string, at::Tensor>> state;
  for (size_t k = 0; k < impl_->blocks.size(); ++k) {
    for (size_t l = 0; l < impl_->blocks[k].size(); ++l) {
      const Layer& layer = impl_->blocks[k][l];
      std::string prefix = absl::StrCat("block", k, ".layer", l, ".");
      state.emplace_back(prefix + "weight", layer.weight);
      state.emplace_back(prefix + "bias", layer.bias);
      state.emplace_back(prefix + "u", layer.u);
      state.emplace_back(prefix + "v", layer.v);
      state.emplace_back(prefix + "sigma", layer.sigma);
    }
  }
  return state;
}

absl::Status IResNet::LoadState(const std::vector<std::pair<std::string, at::Tensor>>& state) {
  std::vector<std::pair<std::string, at::Tensor>> mine = NamedState();
  if (state.size() != mine.size()) {
    return absl::InvalidArgumentError(absl::StrCat("network state: expected ", mine.size(),
                                                   " tensors, got ", state.size()));
  }
  std::unordered_map<std::string, const at::Tensor*> given;
  for (const auto& [name, tensor] : state) given[name] = &tensor;
  for (const auto& [name, target] : mine) {
    auto it = given.find(name);
    if (it == given.end()) {
      return absl::InvalidArgumentError(absl::StrCat("network state: missing tensor ", name));
    }
    const at::Tensor& t = *it->second;
    if (!t.defined() || t.sizes() != target.sizes() || !at::isFloatingType(t.scalar_type())) {
      return absl::InvalidArgumentError(
          absl::StrCat("network state: tensor ", name, " has the wrong shape or type"));
    }
    if (!at::isfinite(t).all().item<bool>()) {
      return absl::InvalidArgumentError(
          absl::StrCat("network state: tensor ", name, " holds NaN or Inf"));
    }
    if (name.size() > 5 && name.compare(name.size() - 5, 5, "sigma") == 0 &&
        !(t.item<double>() > 0.0)) {
      // sigma <= 0 would switch the normalisation off (W / max(1, sigma / c) = W).
      return absl::InvalidArgumentError(
          absl::StrCat("network state: tensor ", name, " must be positive"));
    }
  }
  at::NoGradGuard no_grad;
  for (auto& [name, target] : mine) target.copy_(given[name]->to(impl_->dtype));
  return absl::OkStatus();
}

std::vector<std::vector<IResNet::EffectiveLayer>> IResNet::EffectiveWeights() const {
  at::NoGradGuard no_grad;
  std::vector<std::vector<EffectiveLayer>> result;
  for (const auto& block : impl_->blocks) {
    std::vector<EffectiveLayer> layers;
    for (size_t l = 0; l < block.size(); ++l) {
      layers.push_back({impl_->EffectiveWeight(block[l], l, impl_->training).detach(),
                        block[l].bias.detach()});
    }
    result.push_back(std::move(layers));
  }
  return result;
}

void IResNet::CalibrateSpectralNorms() {
  at::NoGradGuard no_grad;
  for (auto& block : impl_->blocks) {
    for (Layer& layer : block) {
      SingularTriple top = TopSingularTriple(layer.weight);
      layer.sigma.fill_(top.sigma);
      layer.u.copy_(top.u.to(impl_->dtype));
      layer.v.copy_(top.v.to(impl_->dtype));
    }
  }
}

LipschitzCertificate IResNet::Certify() const {
  LipschitzCertificate cert;
  cert.lower_lipschitz = 1.0;
  cert.upper_lipschitz = 1.0;
  for (const auto& block : EffectiveWeights()) {
    std::vector<double> sigmas;
    double bound = 1.0;
    for (const EffectiveLayer& layer : block) {
      sigmas.push_back(TightSpectralNorm(layer.weight));
      bound *= sigmas.back();
    }
    cert.layer_sigmas.push_back(std::move(sigmas));
    cert.block_bounds.push_back(bound);
    cert.max_block_bound = std::max(cert.max_block_bound, bound);
    cert.lower_lipschitz *= std::max(0.0, 1.0 - bound);
    cert.upper_lipschitz *= 1.0 + bound;
  }
  return cert;
}

std::vector<double> IResNet::EstimatedBlockBounds() const {
  std::vector<double> bounds;
  for (const auto& block : impl_->blocks) {
    double bound = 1.0;
    for (size_t l = 0; l < block.size(); ++l) {
      bound *= std::min(block[l].sigma.item<double>(), impl_->layer_caps[l]);
    }
    bounds.push_back(bound);
  }
  return bounds;
}

}  // namespace invnet
