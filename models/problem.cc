#include "models/problem.h"

#include "absl/strings/str_cat.h"

namespace invnet {

absl::string_view LossKindName(LossKind kind) {
  switch (kind) {
    case LossKind::kApproximation:
      return "approximation";
    case LossKind::kReconstruction:
      return "reconstruction";
    case LossKind::kLogDet:
      return "logdet";
    case LossKind::kDivergence:
      return "divergence";
  }
  return "unknown";
}

absl::StatusOr<LossKind> ParseLossKind(absl::string_view name) {
  for (LossKind k : {LossKind::kApproximation, LossKind::kReconstruction, LossKind::kLogDet,
                     LossKind::kDivergence}) {
    if (name == LossKindName(k)) return k;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "loss: unknown '", name, "' (expected approximation, reconstruction, logdet or divergence)"));
}

absl::string_view TargetSpaceName(TargetSpace space) {
  return space == TargetSpace::kMeasurement ? "measurement" : "normal";
}

absl::StatusOr<TargetSpace> ParseTargetSpace(absl::string_view name) {
  if (name == "measurement") return TargetSpace::kMeasurement;
  if (name == "normal") return TargetSpace::kNormal;
  return absl::InvalidArgumentError(
      absl::StrCat("target_space: unknown '", name, "' (expected measurement or normal)"));
}

}  // namespace invnet
