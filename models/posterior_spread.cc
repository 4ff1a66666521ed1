#include "models/posterior_spread.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <tuple>

#include <ATen/ATen.h>

#include "absl/strings/str_cat.h"
#include "models/inverse.h"
#include "models/jacobian.h"
#include "models/memory_estimate.h"
#include "models/operators.h"
#include "models/tensor_checks.h"
#include "models/torch_status.h"
#include "proto/base/status_macros.h"

namespace invnet {
namespace {

std::string LossAndSpace(const PosteriorSpreadSetup& setup) {
  return absl::StrCat("loss '", LossKindName(setup.loss), "' in target space '",
                      TargetSpaceName(setup.target_space), "'");
}

// sqrt of the diagonal of H^-1 for symmetric positive definite H [batch, n, n], through its
// Cholesky factor: (H^-1)_ii = sum_k ((L^-1)_ki)^2. `info` > 0 where H is not positive definite.
std::tuple<at::Tensor, at::Tensor> StdFromPrecision(const at::Tensor& h) {
  auto [l, info] = at::linalg_cholesky_ex(h);
  const int64_t n = h.size(1);
  at::Tensor eye = at::eye(n, h.options()).expand_as(h);
  at::Tensor l_inv = at::linalg_solve_triangular(l, eye, /*upper=*/false);
  return {l_inv.square().sum(1).sqrt(), info};
}

// sqrt of the diagonal of B T B^T for symmetric positive definite T [batch, n, n] and B [n, n]:
// with T = L L^T, the row norms of B L.
std::tuple<at::Tensor, at::Tensor> StdFromCovarianceFactor(const at::Tensor& t,
                                                           const at::Tensor& b) {
  auto [l, info] = at::linalg_cholesky_ex(t);
  return {at::matmul(b, l).square().sum(2).sqrt(), info};
}

}  // namespace

absl::string_view PosteriorSpreadMethodName(PosteriorSpreadMethod method) {
  switch (method) {
    case PosteriorSpreadMethod::kLaplaceDivergence:
      return "laplace-divergence";
    case PosteriorSpreadMethod::kTweedieLogDet:
      return "tweedie-log-det";
  }
  return "unknown";
}

absl::StatusOr<PosteriorSpreadMethod> PosteriorSpreadMethodFor(const PosteriorSpreadSetup& setup,
                                                               const LinearOperator& op) {
  PosteriorSpreadMethod method;
  if (setup.loss == LossKind::kDivergence && setup.target_space == TargetSpace::kNormal) {
    method = PosteriorSpreadMethod::kLaplaceDivergence;
  } else if (setup.loss == LossKind::kLogDet && setup.target_space == TargetSpace::kMeasurement) {
    method = PosteriorSpreadMethod::kTweedieLogDet;
  } else {
    return absl::FailedPreconditionError(absl::StrCat(
        "posterior_std: the model was trained with ", LossAndSpace(setup),
        ", for which no theory ties the network's Jacobian to the posterior covariance (it is "
        "defined for loss 'divergence' in target space 'normal' and loss 'logdet' in target "
        "space 'measurement')"));
  }
  if (!(setup.noise_level > 0)) {
    return absl::FailedPreconditionError(
        "posterior_std: the problem's noise level is 0, so the posterior is degenerate");
  }
  if (!(setup.loss_weight > 0)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "posterior_std: the model was trained with ", LossAndSpace(setup), " and loss weight ",
        setup.loss_weight, "; the regulariser's weight must be > 0"));
  }
  const int64_t n = op.input_dim();
  if (n > kPosteriorSpreadMaxDim) {
    return absl::UnimplementedError(absl::StrCat(
        "posterior_std: the signal dimension ", n, " exceeds ", kPosteriorSpreadMaxDim,
        ", the largest for which the network's exact Jacobians are computed (no estimator for "
        "larger n is implemented)"));
  }
  if (method == PosteriorSpreadMethod::kTweedieLogDet) {
    if (op.output_dim() != n) {
      return absl::FailedPreconditionError(absl::StrCat("posterior_std: ", LossAndSpace(setup),
                                                        " needs a square operator, got ",
                                                        op.output_dim(), " x ", n));
    }
    double largest = 0;
    double smallest = 0;
    INVNET_RETURN_IF_ERROR(GuardTorch("PosteriorSpreadMethodFor", [&]() -> absl::Status {
      at::Tensor sv = at::linalg_svdvals(op.Matrix());
      largest = sv.max().item<double>();
      smallest = sv.min().item<double>();
      return absl::OkStatus();
    }));
    if (!(smallest > 0) || largest / smallest > kPosteriorSpreadMaxCondition) {
      return absl::FailedPreconditionError(
          absl::StrCat("posterior_std: ", LossAndSpace(setup),
                       " needs an invertible operator (Cov[x|y] = "
                       "A^-1 Cov[Ax|y] A^-T); its condition number is ",
                       smallest > 0 ? absl::StrCat(largest / smallest) : std::string("infinite"),
                       ", above ", kPosteriorSpreadMaxCondition));
    }
  }
  return method;
}

absl::StatusOr<PosteriorSpread> NetworkPosteriorSpread(const FrozenIResNet& network,
                                                       const LinearOperator& op,
                                                       const PosteriorSpreadSetup& setup,
                                                       const at::Tensor& x_hat,
                                                       const std::function<bool()>& should_stop) {
  if (network.dim() != op.input_dim()) {
    return absl::InvalidArgumentError(absl::StrCat("posterior_std: network dimension ",
                                                   network.dim(), " != operator input dimension ",
                                                   op.input_dim()));
  }
  INVNET_ASSIGN_OR_RETURN(PosteriorSpreadMethod method, PosteriorSpreadMethodFor(setup, op));
  INVNET_RETURN_IF_ERROR(CheckBatch(x_hat, network.dim(), "x_hat"));
  return GuardTorchOr<PosteriorSpread>(
      "NetworkPosteriorSpread", [&]() -> absl::StatusOr<PosteriorSpread> {
        at::NoGradGuard no_grad;
        const int64_t n = network.dim();
        const double delta2 = setup.noise_level * setup.noise_level;
        const double alpha = setup.loss_weight;
        const at::Tensor a = op.Matrix();  // [n, n] in measurement space, [m, n] in normal
        const at::Tensor eye = at::eye(n, a.options());
        // Laplace: H = base + sym(J) / alpha, base = (1/delta^2 - 1/alpha) A^T A.
        // Tweedie: T = (1 - delta^2/alpha) I + (delta^2/alpha) sym(A J^-1), Cov = delta^2 A^-1 T
        // A^-T.
        const bool laplace = method == PosteriorSpreadMethod::kLaplaceDivergence;
        const at::Tensor base = laplace ? (1.0 / delta2 - 1.0 / alpha) * at::matmul(a.t(), a)
                                        : (1.0 - delta2 / alpha) * eye;
        const at::Tensor a_inv = laplace ? at::Tensor() : at::linalg_inv(a);

        const at::Tensor x = x_hat.to(at::kDouble).contiguous();
        const int64_t batch = x.size(0);
        const int64_t chunk = std::max<int64_t>(
            1, static_cast<int64_t>(kPosteriorSpreadChunkBytes /
                                    PosteriorSpreadBytesPerSample(n, network.hidden_width())));
        PosteriorSpread out;
        out.method = method;
        out.std = at::empty({batch, n}, x.options());
        for (int64_t begin = 0; begin < batch; begin += chunk) {
          if (begin > 0 && should_stop && should_stop()) {
            return absl::CancelledError("posterior_std: stopped on request");
          }
          const int64_t rows = std::min(chunk, batch - begin);
          const at::Tensor j = ExactJacobian(network, x.narrow(0, begin, rows));
          at::Tensor std;
          at::Tensor info;
          if (laplace) {
            std::tie(std, info) = StdFromPrecision(base + (0.5 / alpha) * (j + j.transpose(1, 2)));
          } else {
            // A J^-1 = (J^-T A^T)^T.
            at::Tensor a_j_inv =
                at::linalg_solve(j.transpose(1, 2), a.t().expand({rows, n, n})).transpose(1, 2);
            at::Tensor t = base + (0.5 * delta2 / alpha) * (a_j_inv + a_j_inv.transpose(1, 2));
            std::tie(std, info) = StdFromCovarianceFactor(t, a_inv);
            std = std * std::sqrt(delta2);
          }
          at::Tensor undefined = info.ne(0);
          out.undefined += undefined.sum().item<int64_t>();
          std.masked_fill_(undefined.unsqueeze(1), std::numeric_limits<double>::quiet_NaN());
          out.std.narrow(0, begin, rows).copy_(std);
        }
        return out;
      });
}

}  // namespace invnet
