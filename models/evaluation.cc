#include "models/evaluation.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include <ATen/ATen.h>

#include "models/losses.h"
#include "models/torch_status.h"
#include "proto/base/status_macros.h"

namespace invnet {
namespace {

double MeanSquaredDistance(const at::Tensor& a, const at::Tensor& b) {
  return (a.to(at::kDouble) - b.to(at::kDouble)).pow(2).sum(1).mean().item<double>();
}

// The network's std against the exact one, per sample and coordinate, where both are defined.
void FillStdRatios(const at::Tensor& network_std, const at::Tensor& exact_std,
                   EvaluationMetrics* m) {
  at::Tensor undefined_rows = network_std.isnan().any(1);
  m->std_undefined_fraction = undefined_rows.to(at::kDouble).mean().item<double>();
  at::Tensor usable = network_std.isnan().logical_not().logical_and(exact_std > 0);
  at::Tensor ratios = network_std.masked_select(usable) / exact_std.masked_select(usable);
  if (ratios.numel() == 0) return;
  m->std_ratio_mean = ratios.mean().item<double>();
  at::Tensor q = at::quantile(ratios, at::tensor({0.1, 0.5, 0.9}, ratios.options()));
  m->std_ratio_q10 = q[0].item<double>();
  m->std_ratio_median = q[1].item<double>();
  m->std_ratio_q90 = q[2].item<double>();
}

}  // namespace

TestSet DrawTestSet(const SignalSource& source, const LinearOperator& op, double noise_level,
                    int64_t count, at::Generator generator, const BayesEstimators* references) {
  at::NoGradGuard no_grad;
  TestSet test;
  test.x = source.Sample(count, generator);
  at::Tensor clean = op.Apply(test.x);
  test.y = clean + noise_level * at::randn(clean.sizes(), generator, clean.options());
  if (references != nullptr) {
    test.pm = references->PosteriorMean(test.y);
    test.map = references->Map(test.y).x;
    test.posterior_std = references->PosteriorStd(test.y);
  }
  return test;
}

absl::StatusOr<TestSet> DrawTestSetUnlessStopped(const SignalSource& source,
                                                 const LinearOperator& op, double noise_level,
                                                 int64_t count, at::Generator generator,
                                                 const std::function<bool()>& should_stop) {
  if (count <= kTestSetBlockRows) return DrawTestSet(source, op, noise_level, count, generator);
  std::vector<at::Tensor> signals, measurements;
  for (int64_t first = 0; first < count; first += kTestSetBlockRows) {
    if (first > 0 && should_stop && should_stop()) {
      return absl::CancelledError("test pairs: stopped on request");
    }
    TestSet block = DrawTestSet(source, op, noise_level,
                                std::min(kTestSetBlockRows, count - first), generator);
    signals.push_back(std::move(block.x));
    measurements.push_back(std::move(block.y));
  }
  TestSet test;
  test.x = at::cat(signals);
  test.y = at::cat(measurements);
  return test;
}

EvaluationMetrics EvaluateEstimate(const at::Tensor& x_hat, const TestSet& test) {
  at::NoGradGuard no_grad;
  EvaluationMetrics m;
  m.mse = MeanSquaredDistance(x_hat, test.x);
  if (test.pm.defined()) {
    m.mse_ratio_to_pm = m.mse / MeanSquaredDistance(test.pm, test.x);
    m.rms_to_pm = std::sqrt(MeanSquaredDistance(x_hat, test.pm));
  }
  if (test.map.defined()) m.rms_to_map = std::sqrt(MeanSquaredDistance(x_hat, test.map));
  return m;
}

absl::StatusOr<EvaluationMetrics> EvaluateNetwork(const FrozenIResNet& network,
                                                  const LinearOperator& op,
                                                  TargetSpace target_space, const TestSet& test,
                                                  const InverseOptions& options,
                                                  const PosteriorSpreadSetup* spread) {
  return GuardTorchOr<EvaluationMetrics>(
      "EvaluateNetwork", [&]() -> absl::StatusOr<EvaluationMetrics> {
        at::NoGradGuard no_grad;
        at::Tensor target = TargetFor(op, target_space, test.y).to(at::kFloat);
        INVNET_ASSIGN_OR_RETURN(InverseResult inverse, network.Inverse(target, options));
        EvaluationMetrics m = EvaluateEstimate(inverse.x, test);
        m.converged_fraction = inverse.converged.to(at::kDouble).mean().item<double>();
        m.mean_iterations = inverse.iterations.to(at::kDouble).mean().item<double>();
        INVNET_ASSIGN_OR_RETURN(at::Tensor forward,
                                network.Forward(test.x.to(at::kFloat), options.should_stop));
        at::Tensor clean = op.Apply(test.x);
        if (target_space == TargetSpace::kNormal) clean = op.Adjoint(clean);
        m.forward_error = std::sqrt(MeanSquaredDistance(forward, clean));
        if (spread != nullptr) {
          INVNET_ASSIGN_OR_RETURN(
              PosteriorSpread network_std,
              NetworkPosteriorSpread(network, op, *spread, inverse.x, options.should_stop));
          at::Tensor std = network_std.std.to(at::kDouble);
          at::Tensor defined = std.isnan().logical_not();
          if (defined.any().item<bool>()) {
            m.mean_posterior_std = std.masked_select(defined).mean().item<double>();
          }
          if (test.posterior_std.defined()) {
            FillStdRatios(std, test.posterior_std.to(at::kDouble), &m);
          }
        }
        return m;
      });
}

}  // namespace invnet
