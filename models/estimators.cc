#include "models/estimators.h"

#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

#include <ATen/ATen.h>

#include "absl/strings/str_cat.h"
#include "models/torch_status.h"

namespace invnet {
namespace {

constexpr double kLog2Pi = 1.8378770664093454835606594728112;

// MAP search. The EM fixed point converges linearly (fast where one component dominates, slowly
// between modes); it runs until its step is at round-off level relative to x. Newton then makes
// the first-order condition hold to round-off even where EM stopped at its iteration cap.
constexpr int64_t kMaxEmIterations = 500;
constexpr double kEmStepTolerance = 1e-12;
constexpr int64_t kMaxNewtonIterations = 50;
constexpr double kNewtonStepTolerance = 1e-14;
constexpr int64_t kMaxHalvings = 40;
constexpr double kArmijo = 1e-4;
// Objective values are only known to round-off; a step that changes f by less than this is
// accepted so that Newton can finish at a minimum where f is flat to machine precision.
constexpr double kObjectiveRoundOff = 1e-14;
// Rows x n x n of the largest batched matrix built at once in the MAP search (2 MiB). Larger
// blocks are served by fresh mmaps that page-fault on every allocation: with 16 MiB the 64-D
// MAP ran 2.4x slower (most of it system time).
constexpr int64_t kMaxChunkEntries = int64_t{1} << 18;
// Compute's blocks of rows: at most this many entries in a [rows, K, n] tensor (32 MiB) and at
// most kMaxComputeRows rows, so a stop request is seen within a block's time (milliseconds).
constexpr int64_t kMaxComputeEntries = int64_t{1} << 22;
constexpr int64_t kMaxComputeRows = int64_t{1} << 15;
// Restarts of the MAP search for n > 2, where a mode can lie away from every m_k(y): per
// component, m_k(y) +- kPrincipalStartScale sqrt(lambda_j) u_j along the top
// kPrincipalStartDirections eigenvectors u_j of its posterior covariance P_k
// (tests/bench/map_restarts_bench measures how often they find a lower objective on blur64).
constexpr int64_t kPrincipalStartDirections = 2;
constexpr double kPrincipalStartScale = 1.5;
// ... for the samples whose second-largest posterior component weight is at least this.
constexpr double kAmbiguousWeight = 1e-3;

bool StopRequested(const std::function<bool()>* should_stop) {
  return should_stop != nullptr && *should_stop && (*should_stop)();
}

at::Tensor AsBatch(const at::Tensor& t, int64_t dim, const char* what) {
  TORCH_CHECK(t.defined() && t.dim() == 2 && t.size(1) == dim, what, ": expected [batch, ", dim,
              "], got ", t.defined() ? t.sizes() : at::IntArrayRef{});
  return t.to(at::kDouble);
}

at::Tensor Symmetrised(const at::Tensor& s) { return 0.5 * (s + s.transpose(-2, -1)); }

}  // namespace

struct BayesEstimators::Impl {
  explicit Impl(const GaussianMixture& p) : prior(p) {}

  GaussianMixture prior;
  int64_t n = 0;
  int64_t m = 0;
  int64_t k = 0;
  double delta2 = 0.0;
  at::Tensor a;                 // [m, n]
  at::Tensor ata;               // [n, n]
  at::Tensor log_weights;       // [K]
  at::Tensor a_means;           // [K, m]: A mu_k
  at::Tensor c_cholesky;        // [K, m, m]: Cholesky factors of C_k = A S_k A^T + delta^2 I
  at::Tensor c_log_dets;        // [K]
  at::Tensor gains;             // [K, n, m]: S_k A^T C_k^-1
  at::Tensor post_covariances;  // [K, n, n]: P_k
  at::Tensor precision_means;   // [K, n]: S_k^-1 mu_k
  // [K, 2J, n]: +- kPrincipalStartScale sqrt(lambda_j) u_j of P_k (n > 2; else [K, 0, n]).
  at::Tensor principal_offsets;
  at::Tensor wiener_mean;       // [n]
  at::Tensor wiener_gain;       // [n, m]
  at::Tensor pseudo_inverse;    // [n, m]

  // r_k = y - A mu_k, [B, K, m].
  at::Tensor Residuals(const at::Tensor& y) const { return y.unsqueeze(1) - a_means.unsqueeze(0); }

  // log pi_k + log N(y; A mu_k, C_k), [B, K].
  at::Tensor LogMeasurementComponents(const at::Tensor& residuals) const {
    const at::Tensor r = residuals.permute({1, 2, 0});  // [K, m, B]
    const at::Tensor whitened = at::linalg_solve_triangular(c_cholesky, r, /*upper=*/false);
    const at::Tensor log_norm = log_weights - 0.5 * c_log_dets - 0.5 * m * kLog2Pi;
    return (log_norm.unsqueeze(1) - 0.5 * whitened.pow(2).sum(1)).t();
  }

  // m_k(y) = mu_k + G_k r_k, [B, K, n].
  at::Tensor ComponentMeans(const at::Tensor& residuals) const {
    return prior.spec().means.unsqueeze(0) + at::einsum("kij,bkj->bki", {gains, residuals});
  }

  at::Tensor Objective(const at::Tensor& x, const at::Tensor& y) const {
    const at::Tensor misfit = at::matmul(x, a.t()) - y;
    return 0.5 * misfit.pow(2).sum(1) - delta2 * prior.LogDensity(x);
  }

  // A^T A x - A^T y - delta^2 grad log p(x); `aty` is A^T y as rows.
  at::Tensor Gradient(const at::Tensor& x, const at::Tensor& aty) const {
    return at::matmul(x, ata) - aty - delta2 * prior.Score(x);
  }

  // x <- (A^T A + d^2 sum_k g_k S_k^-1)^-1 (A^T y + d^2 sum_k g_k S_k^-1 mu_k). The matrix is
  // positive definite (a positive combination of precisions plus a PSD term), so Cholesky.
  // Should round-off break that for a row, its step is skipped (x stays) and Newton goes on.
  at::Tensor EmStep(const at::Tensor& x, const at::Tensor& aty) const {
    const int64_t b = x.size(0);
    const at::Tensor gamma = prior.Responsibilities(x);  // [B, K]
    const at::Tensor mixed_precision =
        at::matmul(gamma, prior.precisions().reshape({k, n * n})).view({b, n, n});
    const at::Tensor lhs = ata.unsqueeze(0) + delta2 * mixed_precision;
    const at::Tensor rhs = aty + delta2 * at::matmul(gamma, precision_means);
    auto [factor, info] = at::linalg_cholesky_ex(lhs);
    const at::Tensor next = at::cholesky_solve(rhs.unsqueeze(2), factor).squeeze(2);
    return at::where(info.eq(0).unsqueeze(1), next, x);
  }

  // `should_stop` (may be null) is polled every iteration here and in PolishNewton; a stop
  // leaves x where it is (the caller then discards it).
  at::Tensor RunEm(at::Tensor x, const at::Tensor& aty,
                   const std::function<bool()>* should_stop) const {
    at::Tensor active = at::arange(x.size(0), at::kLong);
    for (int64_t it = 0; it < kMaxEmIterations && active.numel() > 0; ++it) {
      if (StopRequested(should_stop)) break;
      const at::Tensor xa = x.index_select(0, active);
      const at::Tensor next = EmStep(xa, aty.index_select(0, active));
      const at::Tensor step = (next - xa).norm(2, 1);
      const at::Tensor scale = xa.norm(2, 1).clamp_min(1.0);
      x.index_copy_(0, active, next);
      active = active.masked_select(step > kEmStepTolerance * scale);
    }
    return x;
  }

  // Damped Newton on the objective, with the EM step as the direction where the Hessian
  // A^T A - delta^2 Hess log p is not positive definite; Armijo backtracking on the objective.
  at::Tensor PolishNewton(at::Tensor x, const at::Tensor& y, const at::Tensor& aty,
                          const std::function<bool()>* should_stop) const {
    at::Tensor f = Objective(x, y);
    at::Tensor active = at::arange(x.size(0), at::kLong);
    for (int64_t it = 0; it < kMaxNewtonIterations && active.numel() > 0; ++it) {
      if (StopRequested(should_stop)) break;
      const at::Tensor xa = x.index_select(0, active);
      const at::Tensor ya = y.index_select(0, active);
      const at::Tensor atya = aty.index_select(0, active);
      const at::Tensor fa = f.index_select(0, active);
      const at::Tensor g = Gradient(xa, atya);
      const at::Tensor hessian =
          Symmetrised(ata.unsqueeze(0) - delta2 * prior.LogDensityHessian(xa));
      auto [factor, info] = at::linalg_cholesky_ex(hessian);
      const at::Tensor definite = info.eq(0);
      at::Tensor direction = at::zeros_like(xa);
      const at::Tensor pd_rows = definite.nonzero().squeeze(1);
      if (pd_rows.numel() > 0) {
        direction.index_copy_(0, pd_rows,
                              -at::cholesky_solve(g.index_select(0, pd_rows).unsqueeze(2),
                                                  factor.index_select(0, pd_rows))
                                   .squeeze(2));
      }
      const at::Tensor other_rows = definite.logical_not().nonzero().squeeze(1);
      if (other_rows.numel() > 0) {
        const at::Tensor xo = xa.index_select(0, other_rows);
        direction.index_copy_(0, other_rows, EmStep(xo, atya.index_select(0, other_rows)) - xo);
      }
      const at::Tensor slope = (g * direction).sum(1);  // < 0 for a descent direction
      const at::Tensor tolerance = kObjectiveRoundOff * (1.0 + fa.abs());

      // Vectorised backtracking: every row halves its own step until Armijo holds.
      at::Tensor t = at::ones({xa.size(0)}, at::kDouble);
      at::Tensor accepted = at::zeros({xa.size(0)}, at::kBool);
      at::Tensor x_new = xa.clone();
      at::Tensor f_new = fa.clone();
      at::Tensor pending = slope.lt(0).nonzero().squeeze(1);
      for (int64_t h = 0; h < kMaxHalvings && pending.numel() > 0; ++h) {
        const at::Tensor tp = t.index_select(0, pending);
        const at::Tensor trial =
            xa.index_select(0, pending) + tp.unsqueeze(1) * direction.index_select(0, pending);
        const at::Tensor f_trial = Objective(trial, ya.index_select(0, pending));
        const at::Tensor ok =
            f_trial.le(fa.index_select(0, pending) + kArmijo * tp * slope.index_select(0, pending) +
                       tolerance.index_select(0, pending));
        const at::Tensor ok_rows = pending.masked_select(ok);
        x_new.index_copy_(0, ok_rows, trial.index_select(0, ok.nonzero().squeeze(1)));
        f_new.index_copy_(0, ok_rows, f_trial.masked_select(ok));
        accepted.index_fill_(0, ok_rows, true);
        pending = pending.masked_select(ok.logical_not());
        t.index_copy_(0, pending, t.index_select(0, pending) * 0.5);
      }
      x.index_copy_(0, active, x_new);
      f.index_copy_(0, active, f_new);
      const at::Tensor moved = (x_new - xa).norm(2, 1);
      const at::Tensor keep_going =
          accepted.logical_and(moved > kNewtonStepTolerance * x_new.norm(2, 1).clamp_min(1.0));
      active = active.masked_select(keep_going);
    }
    return x;
  }

  // Starts per sample: every m_k(y) and x_PM(y); or, with `principal`, only the principal ones.
  int64_t NumStarts(bool principal) const {
    return principal ? k * principal_offsets.size(1) : k + 1;
  }

  // Samples whose posterior has a second component of weight >= kAmbiguousWeight: where a mode
  // may lie away from every basic start. (With one component dominating, the objective near
  // m_k(y) is that component's convex quadratic plus a small perturbation; on blur64 the extra
  // starts run for every sample found no lower objective in 64 draws at 32x the time.)
  at::Tensor AmbiguousRows(const at::Tensor& y) const {
    if (k < 2 || principal_offsets.size(1) == 0) return at::empty({0}, at::kLong);
    const at::Tensor weights = at::softmax(LogMeasurementComponents(Residuals(y)), 1);
    const at::Tensor second = std::get<0>(weights.topk(2, 1)).select(1, 1);
    return second.ge(kAmbiguousWeight).nonzero().squeeze(1);
  }

  MapResult MapChunk(const at::Tensor& y, const std::function<bool()>* should_stop,
                     bool principal) const {
    const int64_t b = y.size(0);
    const int64_t s = NumStarts(principal);
    const at::Tensor residuals = Residuals(y);
    const at::Tensor means = ComponentMeans(residuals);  // [b, K, n]
    at::Tensor starts;
    if (principal) {
      // [b, K, 2J, n] -> [b, K * 2J, n]
      starts = (means.unsqueeze(2) + principal_offsets.unsqueeze(0)).reshape({b * s, n});
    } else {
      const at::Tensor weights = at::softmax(LogMeasurementComponents(residuals), 1);
      const at::Tensor pm = (weights.unsqueeze(2) * means).sum(1, /*keepdim=*/true);
      starts = at::cat({means, pm}, 1).reshape({b * s, n});
    }
    const at::Tensor ys = y.repeat_interleave(s, 0);
    const at::Tensor atys = at::matmul(ys, a);
    at::Tensor x = RunEm(starts.clone(), atys, should_stop);
    x = PolishNewton(std::move(x), ys, atys, should_stop);
    const at::Tensor objective = Objective(x, ys).view({b, s});
    const at::Tensor best = objective.argmin(1);  // [b]
    const at::Tensor rows = at::arange(b, at::kLong) * s + best;
    MapResult result;
    result.x = x.index_select(0, rows);
    result.objective = objective.gather(1, best.unsqueeze(1)).squeeze(1);
    result.gradient_norm = Gradient(result.x, at::matmul(y, a)).norm(2, 1);
    return result;
  }
};

absl::StatusOr<std::unique_ptr<BayesEstimators>> BayesEstimators::Create(
    const LinearOperator& op, const GaussianMixture& prior, double noise_level) {
  if (op.input_dim() != prior.dim()) {
    return absl::InvalidArgumentError(absl::StrCat("operator: input dimension ", op.input_dim(),
                                                   " does not match the prior's dimension ",
                                                   prior.dim()));
  }
  if (!(noise_level > 0.0) || !std::isfinite(noise_level)) {
    return absl::InvalidArgumentError(
        absl::StrCat("noise_level: must be positive and finite (got ", noise_level, ")"));
  }
  return GuardTorchOr<std::unique_ptr<BayesEstimators>>(
      "BayesEstimators::Create", [&]() -> absl::StatusOr<std::unique_ptr<BayesEstimators>> {
        auto impl = std::make_shared<Impl>(prior);
        const GaussianMixtureSpec& spec = prior.spec();
        impl->n = prior.dim();
        impl->m = op.output_dim();
        impl->k = prior.num_components();
        impl->delta2 = noise_level * noise_level;
        const int64_t m = impl->m;
        const at::Tensor a = op.Matrix().to(at::kDouble).contiguous();
        impl->a = a;
        impl->ata = Symmetrised(at::matmul(a.t(), a)).contiguous();
        impl->log_weights = spec.weights.log();
        impl->a_means = at::matmul(spec.means, a.t()).contiguous();
        const at::Tensor noise = impl->delta2 * at::eye(m, at::kDouble);

        // Per component: C_k, its factor, the gain S_k A^T C_k^-1 = (C_k^-1 A S_k)^T and P_k.
        const at::Tensor a_s = at::matmul(a, spec.covariances);  // [K, m, n]
        const at::Tensor c = Symmetrised(at::matmul(a_s, a.t()) + noise);
        auto [c_factor, c_info] = at::linalg_cholesky_ex(c);
        if (c_info.ne(0).any().item<bool>()) {
          return absl::InternalError(
              "BayesEstimators: A S_k A^T + delta^2 I not positive definite");
        }
        impl->c_cholesky = c_factor.contiguous();
        impl->c_log_dets = 2.0 * c_factor.diagonal(0, 1, 2).log().sum(1);
        const at::Tensor c_inv_a_s = at::cholesky_solve(a_s, c_factor);  // [K, m, n]
        impl->gains = c_inv_a_s.transpose(1, 2).contiguous();
        impl->post_covariances =
            Symmetrised(spec.covariances - at::matmul(a_s.transpose(1, 2), c_inv_a_s)).contiguous();
        impl->precision_means =
            at::matmul(prior.precisions(), spec.means.unsqueeze(2)).squeeze(2).contiguous();

        // Wiener: the same formulas for the moment-matched Gaussian.
        impl->wiener_mean = prior.Mean();
        const at::Tensor a_sw = at::matmul(a, prior.Covariance());  // [m, n]
        const at::Tensor cw = Symmetrised(at::matmul(a_sw, a.t()) + noise);
        impl->wiener_gain =
            at::cholesky_solve(a_sw, at::linalg_cholesky(cw)).t().contiguous();  // [n, m]
        impl->pseudo_inverse = at::linalg_pinv(a).contiguous();
        const int64_t n = impl->n;
        if (n > 2) {
          auto [values, vectors] = at::linalg_eigh(impl->post_covariances);  // ascending
          const int64_t j = std::min<int64_t>(kPrincipalStartDirections, n);
          const at::Tensor top = vectors.narrow(2, n - j, j).transpose(1, 2);  // [K, J, n]
          const at::Tensor scales = values.narrow(1, n - j, j).clamp_min(0).sqrt();  // [K, J]
          const at::Tensor offsets = kPrincipalStartScale * scales.unsqueeze(2) * top;
          impl->principal_offsets = at::cat({offsets, -offsets}, 1).contiguous();
        } else {
          impl->principal_offsets = at::empty({impl->k, 0, n}, at::kDouble);
        }
        std::unique_ptr<BayesEstimators> estimators(new BayesEstimators());
        estimators->impl_ = std::move(impl);
        return estimators;
      });
}

int64_t BayesEstimators::input_dim() const { return impl_->n; }
int64_t BayesEstimators::output_dim() const { return impl_->m; }

at::Tensor BayesEstimators::PosteriorWeights(const at::Tensor& y) const {
  const at::Tensor yd = AsBatch(y, impl_->m, "BayesEstimators: y");
  return at::softmax(impl_->LogMeasurementComponents(impl_->Residuals(yd)), 1);
}

at::Tensor BayesEstimators::PosteriorMean(const at::Tensor& y) const {
  const at::Tensor yd = AsBatch(y, impl_->m, "BayesEstimators: y");
  const at::Tensor residuals = impl_->Residuals(yd);
  const at::Tensor weights = at::softmax(impl_->LogMeasurementComponents(residuals), 1);
  return (weights.unsqueeze(2) * impl_->ComponentMeans(residuals)).sum(1);
}

at::Tensor BayesEstimators::PosteriorCovariance(const at::Tensor& y) const {
  // Centred form sum_k w_k (P_k + (m_k - x_PM)(m_k - x_PM)^T): no cancellation.
  const int64_t n = impl_->n;
  const at::Tensor yd = AsBatch(y, impl_->m, "BayesEstimators: y");
  const int64_t b = yd.size(0);
  const at::Tensor residuals = impl_->Residuals(yd);
  const at::Tensor weights = at::softmax(impl_->LogMeasurementComponents(residuals), 1);
  const at::Tensor means = impl_->ComponentMeans(residuals);
  const at::Tensor centred = means - (weights.unsqueeze(2) * means).sum(1, true);  // [B, K, n]
  const at::Tensor spread = at::matmul((weights.unsqueeze(2) * centred).transpose(1, 2), centred);
  const at::Tensor within =
      at::matmul(weights, impl_->post_covariances.view({impl_->k, n * n})).view({b, n, n});
  return Symmetrised(within + spread);
}

at::Tensor BayesEstimators::PosteriorStd(const at::Tensor& y) const {
  const at::Tensor yd = AsBatch(y, impl_->m, "BayesEstimators: y");
  const at::Tensor residuals = impl_->Residuals(yd);
  const at::Tensor weights = at::softmax(impl_->LogMeasurementComponents(residuals), 1);
  const at::Tensor means = impl_->ComponentMeans(residuals);
  const at::Tensor centred = means - (weights.unsqueeze(2) * means).sum(1, true);
  const at::Tensor variance = at::matmul(weights, impl_->post_covariances.diagonal(0, 1, 2)) +
                              (weights.unsqueeze(2) * centred.pow(2)).sum(1);
  return variance.clamp_min(0.0).sqrt();
}

at::Tensor BayesEstimators::MeasurementScore(const at::Tensor& y) const {
  // grad log p_Y(y) = -sum_k w_k C_k^-1 (y - A mu_k).
  const at::Tensor yd = AsBatch(y, impl_->m, "BayesEstimators: y");
  const at::Tensor residuals = impl_->Residuals(yd);
  const at::Tensor weights = at::softmax(impl_->LogMeasurementComponents(residuals), 1);
  const at::Tensor c_inv_r =
      at::cholesky_solve(residuals.permute({1, 2, 0}), impl_->c_cholesky);  // [K, m, B]
  return -at::einsum("bk,kjb->bj", {weights, c_inv_r});
}

MapResult BayesEstimators::Map(const at::Tensor& y) const {
  return MapUntil(*impl_, y, nullptr, true).value();  // cannot stop without a predicate
}

MapResult BayesEstimators::MapFromBasicStarts(const at::Tensor& y) const {
  return MapUntil(*impl_, y, nullptr, false).value();
}

absl::StatusOr<MapResult> BayesEstimators::MapUntil(const Impl& impl, const at::Tensor& y,
                                                    const std::function<bool()>* should_stop,
                                                    bool principal_starts) {
  const int64_t n = impl.n;
  const at::Tensor yd = AsBatch(y, impl.m, "BayesEstimators: y");
  const int64_t b = yd.size(0);
  const int64_t starts = std::max(impl.NumStarts(false), impl.NumStarts(true));
  const int64_t chunk = std::max<int64_t>(1, kMaxChunkEntries / (starts * n * n));
  std::vector<at::Tensor> xs, objectives, gradient_norms;
  for (int64_t begin = 0; begin < b; begin += chunk) {
    const at::Tensor y_chunk = yd.narrow(0, begin, std::min(chunk, b - begin));
    MapResult part = impl.MapChunk(y_chunk, should_stop, false);
    const at::Tensor rows =
        principal_starts ? impl.AmbiguousRows(y_chunk) : at::empty({0}, at::kLong);
    if (rows.numel() > 0 && !StopRequested(should_stop)) {
      // The extra starts where the basic ones may miss a mode; the lower objective wins.
      MapResult extra = impl.MapChunk(y_chunk.index_select(0, rows), should_stop, true);
      const at::Tensor better = extra.objective < part.objective.index_select(0, rows);
      const at::Tensor better_rows = rows.masked_select(better);
      const at::Tensor picked = better.nonzero().squeeze(1);
      part.x.index_copy_(0, better_rows, extra.x.index_select(0, picked));
      part.objective.index_copy_(0, better_rows, extra.objective.index_select(0, picked));
      part.gradient_norm.index_copy_(0, better_rows, extra.gradient_norm.index_select(0, picked));
    }
    if (StopRequested(should_stop)) return absl::CancelledError("MAP: stopped on request");
    xs.push_back(std::move(part.x));
    objectives.push_back(std::move(part.objective));
    gradient_norms.push_back(std::move(part.gradient_norm));
  }
  MapResult result;
  if (b == 0) {
    result.x = at::empty({0, n}, at::kDouble);
    result.objective = at::empty({0}, at::kDouble);
    result.gradient_norm = at::empty({0}, at::kDouble);
    return result;
  }
  result.x = at::cat(xs);
  result.objective = at::cat(objectives);
  result.gradient_norm = at::cat(gradient_norms);
  return result;
}

at::Tensor BayesEstimators::MapObjective(const at::Tensor& x, const at::Tensor& y) const {
  const at::Tensor xd = AsBatch(x, impl_->n, "BayesEstimators::MapObjective: x");
  const at::Tensor yd = AsBatch(y, impl_->m, "BayesEstimators::MapObjective: y");
  TORCH_CHECK(xd.size(0) == yd.size(0), "BayesEstimators::MapObjective: batch sizes differ (",
              xd.size(0), " vs ", yd.size(0), ")");
  return impl_->Objective(xd, yd);
}

at::Tensor BayesEstimators::Wiener(const at::Tensor& y) const {
  const at::Tensor yd = AsBatch(y, impl_->m, "BayesEstimators: y");
  const at::Tensor predicted = at::matmul(impl_->a, impl_->wiener_mean);  // [m]
  return impl_->wiener_mean + at::matmul(yd - predicted, impl_->wiener_gain.t());
}

at::Tensor BayesEstimators::PseudoInverse(const at::Tensor& y) const {
  const at::Tensor yd = AsBatch(y, impl_->m, "BayesEstimators: y");
  return at::matmul(yd, impl_->pseudo_inverse.t());
}

absl::StatusOr<Estimates> BayesEstimators::Compute(
    const at::Tensor& y, const EstimatorSelection& which,
    const std::function<bool()>& should_stop) const {
  const at::Tensor yd = AsBatch(y, impl_->m, "BayesEstimators: y");
  const int64_t b = yd.size(0);
  const int64_t width = impl_->k * std::max(impl_->n, impl_->m);
  const int64_t chunk = std::clamp<int64_t>(kMaxComputeEntries / width, 1, kMaxComputeRows);
  std::vector<at::Tensor> pm, sd, wiener, pinv;
  for (int64_t begin = 0; begin < b; begin += chunk) {
    if (begin > 0 && StopRequested(&should_stop)) {
      return absl::CancelledError("estimators: stopped on request");
    }
    const at::Tensor rows = yd.narrow(0, begin, std::min(chunk, b - begin));
    if (which.posterior_mean) pm.push_back(PosteriorMean(rows));
    if (which.posterior_std) sd.push_back(PosteriorStd(rows));
    if (which.wiener) wiener.push_back(Wiener(rows));
    if (which.pseudo_inverse) pinv.push_back(PseudoInverse(rows));
  }
  auto joined = [&](const std::vector<at::Tensor>& parts) {
    return parts.empty() ? at::empty({0, impl_->n}, at::kDouble) : at::cat(parts);
  };
  Estimates result;
  if (which.posterior_mean) result.posterior_mean = joined(pm);
  if (which.posterior_std) result.posterior_std = joined(sd);
  if (which.wiener) result.wiener = joined(wiener);
  if (which.pseudo_inverse) result.pseudo_inverse = joined(pinv);
  if (which.map) {
    absl::StatusOr<MapResult> map = MapUntil(*impl_, yd, &should_stop, true);
    if (!map.ok()) return map.status();
    result.map = *std::move(map);
  }
  return result;
}

}  // namespace invnet
