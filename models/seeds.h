#ifndef INVNET_MODELS_SEEDS_H_
#define INVNET_MODELS_SEEDS_H_

// One user-visible seed feeds several random streams: training's batches, noise and probes; the
// validation pairs; test pairs drawn for evaluation (DrawTestPairs, the benchmarks); and the
// held-out split of a dataset. Each stream gets its own generator seed from StreamSeed, so no two
// of them ever draw the same numbers: test pairs drawn with seed 0 are not the first training
// batch of a model trained with seed 0 (as they were before), and tuning on validation never
// sees a test draw.

#include <cstdint>

namespace invnet {

enum class SeedStream {
  kTraining,     // the seed itself, so models trained before the streams existed reproduce
  kValidation,   // seed ^ 0x9e3779b97f4a7c15 (the trainer's validation stream since the start)
  kTest,         // SplitMix64 of the seed and a constant of its own
  kDatasetSplit  // SplitMix64 of the seed and another constant
};

inline uint64_t SplitMix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

inline uint64_t StreamSeed(uint64_t seed, SeedStream stream) {
  switch (stream) {
    case SeedStream::kTraining:
      return seed;
    case SeedStream::kValidation:
      return seed ^ 0x9e3779b97f4a7c15ull;
    case SeedStream::kTest:
      return SplitMix64(seed ^ 0x5465737450616972ull);  // "TestPair"
    case SeedStream::kDatasetSplit:
      return SplitMix64(seed ^ 0x486f6c644f757421ull);  // "HoldOut!"
  }
  return seed;
}

}  // namespace invnet

#endif  // INVNET_MODELS_SEEDS_H_
