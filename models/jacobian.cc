#include "models/jacobian.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include <ATen/ATen.h>

#include "models/activation.h"
#include "models/inverse.h"
#include "models/iresnet.h"

namespace invnet {
namespace {

// Rademacher probes as rows, [batch, p, dim], in x's dtype.
at::Tensor RademacherProbes(const at::Tensor& x, int64_t num_probes, at::Generator generator) {
  TORCH_CHECK(num_probes >= 1, "num_probes must be >= 1");
  at::Tensor bits =
      at::randint(0, 2, {x.size(0), num_probes, x.size(1)}, generator, x.options().dtype(at::kLong));
  return (bits * 2 - 1).to(x.scalar_type());
}

at::Tensor BatchIdentity(const at::Tensor& x) {
  return at::eye(x.size(1), x.options()).expand({x.size(0), x.size(1), x.size(1)});
}

// log det M for a batch of matrices [batch, n, n] with positive determinants. For n <= 3 the
// determinant in closed form: a few elementwise products instead of a batched LU (and its
// backward) on tiny matrices, which cost more than the rest of the log-det loss for n = 2.
at::Tensor LogDetPositive(const at::Tensor& m) {
  const int64_t n = m.size(1);
  auto e = [&](int64_t i, int64_t j) { return m.select(1, i).select(1, j); };
  switch (n) {
    case 1:
      return at::log(e(0, 0));
    case 2:
      return at::log(e(0, 0) * e(1, 1) - e(0, 1) * e(1, 0));
    case 3:
      return at::log(e(0, 0) * (e(1, 1) * e(2, 2) - e(1, 2) * e(2, 1)) -
                     e(0, 1) * (e(1, 0) * e(2, 2) - e(1, 2) * e(2, 0)) +
                     e(0, 2) * (e(1, 0) * e(2, 1) - e(1, 1) * e(2, 0)));
    default:
      return std::get<1>(at::linalg_slogdet(m));
  }
}

}  // namespace

ForwardAndValue JacobianVectorProduct(const IResNet& net, const at::Tensor& x,
                                      const at::Tensor& tangents) {
  TORCH_CHECK(tangents.dim() == 3 && tangents.size(0) == x.size(0) &&
                  tangents.size(2) == x.size(1),
              "JacobianVectorProduct: tangents must be [batch, p, dim]");
  at::Tensor h = x;
  at::Tensor t = tangents;
  for (int64_t k = 0; k < net.num_blocks(); ++k) {
    ResidualLinearization lin = net.LinearizeResidual(k, h);
    t = t + lin.Apply(t);
    h = h + lin.value();
  }
  return {h, t};
}

ForwardAndValue ExactJacobian(const IResNet& net, const at::Tensor& x) {
  // Row j of the propagated identity is J e_j, the j-th column of J.
  ForwardAndValue rows = JacobianVectorProduct(net, x, BatchIdentity(x));
  return {rows.output, rows.value.transpose(1, 2)};
}

at::Tensor ExactJacobian(const FrozenIResNet& net, const at::Tensor& x) {
  TORCH_CHECK(x.dim() == 2 && x.size(1) == net.dim(), "ExactJacobian: expected [batch, ",
              net.dim(), "], got ", x.sizes());
  const auto f64 = at::TensorOptions().dtype(at::kDouble);
  at::Tensor h = x.to(at::kDouble);
  // Tangent rows, propagated as in JacobianVectorProduct: row j ends as (J e_j)^T.
  at::Tensor t = BatchIdentity(h);
  for (const auto& block : net.float64_blocks()) {
    at::Tensor a = h;
    at::Tensor s = t;
    for (size_t l = 0; l < block.size(); ++l) {
      const auto& layer = block[l];
      // from_blob does not copy; the network outlives these temporaries.
      at::Tensor weight_t = at::from_blob(const_cast<double*>(layer.weight_t.data()),
                                          {layer.in, layer.out}, f64);
      at::Tensor bias = at::from_blob(const_cast<double*>(layer.bias.data()), {layer.out}, f64);
      at::Tensor z = at::addmm(bias, a, weight_t);
      s = at::matmul(s, weight_t);
      if (l + 1 < block.size()) {
        s = s * ActivationSlope(net.activation(), z).unsqueeze(1);
        a = ApplyActivation(net.activation(), z);
      } else {
        a = z;
      }
    }
    h = h + a;
    t = t + s;
  }
  return t.transpose(1, 2);
}

ForwardAndValue ExactLogDet(const IResNet& net, const at::Tensor& x) {
  at::Tensor h = x;
  at::Tensor identity = BatchIdentity(x);
  at::Tensor log_det = at::zeros({x.size(0)}, x.options());
  for (int64_t k = 0; k < net.num_blocks(); ++k) {
    ResidualLinearization lin = net.LinearizeResidual(k, h);
    // det(I + J_g) > 0 because every eigenvalue of I + J_g has real part >= 1 - Lip(g) > 0.
    // (identity + Apply(identity) is (I + J_g)^T, which has the same determinant.)
    log_det = log_det + LogDetPositive(identity + lin.Apply(identity));
    h = h + lin.value();
  }
  return {h, log_det};
}

ForwardAndValue ExactDivergence(const IResNet& net, const at::Tensor& x) {
  ForwardAndValue jac = ExactJacobian(net, x);
  return {jac.output, jac.value.diagonal(0, 1, 2).sum(-1)};
}

ForwardAndValue HutchinsonDivergence(const IResNet& net, const at::Tensor& x,
                                     int64_t num_probes, at::Generator generator) {
  at::Tensor probes = RademacherProbes(x, num_probes, generator);
  ForwardAndValue jvp = JacobianVectorProduct(net, x, probes);
  // v^T J v per probe, averaged over probes.
  return {jvp.output, (probes * jvp.value).sum(-1).mean(-1)};
}

ForwardAndValue PowerSeriesLogDet(const IResNet& net, const at::Tensor& x, int64_t num_terms,
                                  int64_t num_probes, at::Generator generator) {
  TORCH_CHECK(num_terms >= 1, "num_terms must be >= 1");
  at::Tensor h = x;
  at::Tensor log_det = at::zeros({x.size(0)}, x.options());
  for (int64_t k = 0; k < net.num_blocks(); ++k) {
    ResidualLinearization lin = net.LinearizeResidual(k, h);
    at::Tensor probes = RademacherProbes(x, num_probes, generator);
    at::Tensor w = probes;
    for (int64_t t = 1; t <= num_terms; ++t) {
      w = lin.Apply(w);  // J_g^t v
      double coeff = (t % 2 == 1 ? 1.0 : -1.0) / static_cast<double>(t);
      log_det = log_det + coeff * (probes * w).sum(-1).mean(-1);
    }
    h = h + lin.value();
  }
  return {h, log_det};
}

ForwardAndValue RussianRouletteLogDet(const IResNet& net, const at::Tensor& x,
                                      int64_t exact_terms, int64_t num_probes,
                                      at::Generator generator) {
  TORCH_CHECK(exact_terms >= 1, "exact_terms must be >= 1");
  constexpr int64_t kMaxRandomTerms = 100000;
  const std::vector<double> bounds = net.EstimatedBlockBounds();
  const bool with_gradient = at::GradMode::is_enabled();
  at::Tensor h = x;
  at::Tensor log_det = at::zeros({x.size(0)}, x.options());
  for (int64_t k = 0; k < net.num_blocks(); ++k) {
    ResidualLinearization lin = net.LinearizeResidual(k, h);
    at::Tensor probes = RademacherProbes(x, num_probes, generator);
    const double q = std::clamp(bounds[k], 0.5, 0.95);
    const double u = at::rand({1}, generator, at::kDouble).item<double>();
    const int64_t random_terms =
        u > 0 ? std::min<int64_t>(kMaxRandomTerms,
                                  static_cast<int64_t>(std::floor(std::log(u) / std::log(q))))
              : kMaxRandomTerms;
    const int64_t num_terms = exact_terms + random_terms;
    at::Tensor value = at::zeros({x.size(0)}, x.options());
    at::Tensor neumann;  // w, rows [batch, p, dim]
    {
      at::NoGradGuard no_grad;
      at::Tensor power = probes;  // (J^T)^(t-1) v as rows, i.e. v^T J^(t-1)
      neumann = at::zeros_like(probes);
      for (int64_t t = 1; t <= num_terms; ++t) {
        // 1 / P(N >= t): 1 for the exact terms, q^-(t - exact_terms) after them.
        const double inverse_survival =
            t <= exact_terms ? 1.0 : std::pow(q, -static_cast<double>(t - exact_terms));
        const double sign = t % 2 == 1 ? 1.0 : -1.0;
        if (with_gradient) neumann.add_(power, sign * inverse_survival);
        power = lin.ApplyTranspose(power);  // v^T J^t
        value.add_((probes * power).sum(-1).mean(-1), sign * inverse_survival / t);
      }
    }
    if (with_gradient) {
      at::Tensor surrogate = (neumann * lin.Apply(probes)).sum(-1).mean(-1);
      value = value + (surrogate - surrogate.detach());
    }
    log_det = log_det + value;
    h = h + lin.value();
  }
  return {h, log_det};
}

ForwardAndValue LogDet(const IResNet& net, const at::Tensor& x,
                       const JacobianEstimatorOptions& options, at::Generator generator) {
  if (net.dim() <= options.exact_max_dim) return ExactLogDet(net, x);
  switch (options.log_det) {
    case LogDetEstimator::kRussianRoulette:
      return RussianRouletteLogDet(net, x, options.roulette_exact_terms, options.num_probes,
                                   generator);
    case LogDetEstimator::kTruncatedSeries:
      break;
  }
  return PowerSeriesLogDet(net, x, options.series_terms, options.num_probes, generator);
}

ForwardAndValue Divergence(const IResNet& net, const at::Tensor& x,
                           const JacobianEstimatorOptions& options, at::Generator generator) {
  if (net.dim() <= options.exact_max_dim) return ExactDivergence(net, x);
  return HutchinsonDivergence(net, x, options.num_probes, generator);
}

}  // namespace invnet
