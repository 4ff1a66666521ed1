#include "models/losses.h"

#include <ATen/ATen.h>

#include "absl/strings/str_cat.h"
#include "models/iresnet.h"
#include "models/torch_status.h"
#include "proto/base/status_macros.h"

namespace invnet {
namespace {

at::Tensor HalfSquaredError(const at::Tensor& a, const at::Tensor& b) {
  return 0.5 * (a - b).pow(2).sum(1);
}

// w solving J_phi(x)^T w = g, g [batch, dim], without a graph.
at::Tensor SolveTransposedJacobian(const IResNet& net, const at::Tensor& x, const at::Tensor& g,
                                   const LossOptions& options) {
  at::NoGradGuard no_grad;
  if (net.dim() <= options.estimator.exact_max_dim) {
    at::Tensor jac = ExactJacobian(net, x).value;  // [batch, n, n]
    return at::linalg_solve(jac.transpose(1, 2), g.unsqueeze(-1)).squeeze(-1);
  }
  // J_phi = J_K ... J_1, so J_phi^T w = g is J_1^T (J_2^T (... J_K^T w)) = g: solve the blocks
  // from the first. Each (I + J_g^T) a = b is a contraction a <- b - J_g^T a (||J_g|| <= L < 1).
  std::vector<ResidualLinearization> blocks;
  at::Tensor h = x;
  for (int64_t k = 0; k < net.num_blocks(); ++k) {
    blocks.push_back(net.LinearizeResidual(k, h));
    h = h + blocks.back().value();
  }
  at::Tensor b = g.unsqueeze(1);  // one cotangent row per sample
  for (const ResidualLinearization& lin : blocks) {
    at::Tensor a = b;
    const double scale = b.norm().item<double>();
    for (int64_t it = 0; it < options.adjoint_max_iterations; ++it) {
      at::Tensor next = b - lin.ApplyTranspose(a);
      const double change = (next - a).norm().item<double>();
      a = next;
      if (change <= options.adjoint_tolerance * scale) break;
    }
    b = a;
  }
  return b.squeeze(1);
}

absl::StatusOr<LossValue> ReconstructionLoss(const IResNet& net, const at::Tensor& x,
                                             const at::Tensor& target,
                                             const LossOptions& options) {
  // The inverse of phi exactly as Forward evaluates it now (in training mode: with
  // sigma = u^T W v), so the implicit gradient below is the gradient of this loss.
  INVNET_ASSIGN_OR_RETURN(auto frozen,
                          FrozenIResNet::Create(net, FrozenIResNet::Bounds::kEstimated));
  at::Tensor target_detached = target.detach();
  // A training solve: the tolerance is per block, in the network's precision (inverse.h).
  InverseOptions solver = options.solver;
  solver.per_block_tolerance = true;
  INVNET_ASSIGN_OR_RETURN(InverseResult inverse, frozen->Inverse(target_detached, solver));
  at::Tensor x_hat = inverse.x;
  const double batch = static_cast<double>(x.size(0));
  at::Tensor per_sample = HalfSquaredError(x_hat, x.detach());
  // d(mean loss)/d x_hat = (x_hat - x) / batch.
  at::Tensor w = SolveTransposedJacobian(net, x_hat, (x_hat - x.detach()) / batch, options);
  at::Tensor surrogate = -(w * net.Forward(x_hat)).sum();
  at::Tensor value = per_sample.mean();
  LossValue result;
  result.objective = surrogate + (value - surrogate).detach();
  result.data_term = value.item<double>();
  result.inverse_iterations = inverse.iterations.to(at::kDouble).mean().item<double>();
  result.inverse_converged = inverse.converged.to(at::kDouble).mean().item<double>();
  return result;
}

}  // namespace

at::Tensor TargetFor(const LinearOperator& op, TargetSpace space, const at::Tensor& y) {
  return space == TargetSpace::kNormal ? op.Adjoint(y) : y;
}

absl::StatusOr<LossValue> ComputeLoss(const IResNet& net, const LinearOperator& op,
                                      const at::Tensor& x, const at::Tensor& y,
                                      const LossOptions& options, at::Generator generator) {
  if (x.dim() != 2 || x.size(1) != net.dim() || op.input_dim() != net.dim()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "loss: x must be [batch, ", net.dim(), "] and the operator's input dimension ",
        op.input_dim(), " must equal the network's"));
  }
  if (y.dim() != 2 || y.size(0) != x.size(0) || y.size(1) != op.output_dim()) {
    return absl::InvalidArgumentError(
        absl::StrCat("loss: y must be [batch, ", op.output_dim(), "]"));
  }
  if (options.target_space == TargetSpace::kMeasurement && op.output_dim() != net.dim()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "target_space: 'measurement' needs a square operator (m = n), got m = ", op.output_dim(),
        ", n = ", net.dim(), "; use 'normal'"));
  }
  return GuardTorchOr<LossValue>("ComputeLoss", [&]() -> absl::StatusOr<LossValue> {
    at::Tensor target = TargetFor(op, options.target_space, y);
    if (options.kind == LossKind::kReconstruction) {
      return ReconstructionLoss(net, x, target, options);
    }
    LossValue result;
    at::Tensor output;
    at::Tensor regularizer;
    switch (options.kind) {
      case LossKind::kApproximation:
        output = net.Forward(x);
        break;
      case LossKind::kLogDet: {
        ForwardAndValue r = LogDet(net, x, options.estimator, generator);
        output = r.output;
        regularizer = r.value;
        break;
      }
      case LossKind::kDivergence: {
        ForwardAndValue r = Divergence(net, x, options.estimator, generator);
        output = r.output;
        regularizer = r.value;
        break;
      }
      case LossKind::kReconstruction:
        break;
    }
    at::Tensor data = HalfSquaredError(output, target).mean();
    result.data_term = data.item<double>();
    result.objective = data;
    if (regularizer.defined()) {
      at::Tensor mean_reg = regularizer.mean();
      result.regularizer = mean_reg.item<double>();
      // Subtracted: the regularised losses reward a larger log det / divergence.
      result.objective = data - options.weight * mean_reg;
    }
    return result;
  });
}

}  // namespace invnet
