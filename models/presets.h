#ifndef INVNET_MODELS_PRESETS_H_
#define INVNET_MODELS_PRESETS_H_

// Named problems with their default architecture and schedule (models/README.md section 5). The
// service, the CLI and the experiments all refer to problems by these names.
//
//   bimodal2d  prior 1/2 N((-1,0), 0.3^2 I) + 1/2 N((1,0), 0.3^2 I), A = [[0.9,0.2],[0.1,0.5]],
//              delta = 0.2; 4 blocks of width 64 (3 layers), c = 0.9, ELU; Adam 3e-3 cosine,
//              3000 steps of 512.
//   blur64     64 samples on a periodic grid, 4-component Gaussian-mixture prior of smooth
//              sinusoids, A = periodic Gaussian blur (sigma 2 samples), delta = 0.05; 6 blocks of
//              width 256, 3 layers, c = 0.857 per block, ELU; Adam 1e-3 cosine, 3000 steps of 256;
//              stochastic Jacobian estimators (one Hutchinson probe).

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "models/iresnet.h"
#include "models/problem.h"

namespace invnet {

struct Preset {
  std::string name;
  std::string description;
  ProblemSpec problem;
  IResNetConfig architecture;
  TrainingSpec training;  // for the loss asked for, with its default target space
};

std::vector<std::string> PresetNames();

// The preset `name` set up to train with `loss`: one of PresetNames() or a member of a random
// problem family, "random2d-17" (models/problem_family.h). NOT_FOUND for an unknown name.
absl::StatusOr<Preset> GetPreset(absl::string_view name, LossKind loss);

// The target space a loss uses by default: the divergence loss works in normal-equation space
// (its minimiser is A^T A x - alpha grad log p_X, models/README.md section 3), the others in
// measurement space when A is square, otherwise normal space.
TargetSpace DefaultTargetSpace(LossKind loss, bool square_operator);

// Training steps for a problem without a preset's own schedule (a family member, a problem in a
// TrainRequest): 3000 for signals of dimension below 8, 6000 from 8 on. Chosen on the tuning
// members of the random families (seeds 0-19, never the reported 1000-1009): at n = 8, 6000
// steps took the divergence network from 1.114 to 1.055 x PM on random8-0 and from 1.251 to
// 1.144 on average over random8-2..5 (the exact MAP: 1.048), where at n = 2 the 3000 steps had
// converged. Larger n was not tuned; more steps cost time, not accuracy (every step draws fresh
// pairs).
int64_t DefaultTrainingSteps(int64_t dim);

}  // namespace invnet

#endif  // INVNET_MODELS_PRESETS_H_
