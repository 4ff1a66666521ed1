// The main() of every test that links LibTorch. LibTorch seeds its default generator from
// /dev/urandom, so a test drawing at::randn without a generator of its own would see new data
// in every run and fail now and then where one draw in a hundred is hard: CI must not depend on
// luck. Seeded here, every run draws the same; INVNET_TEST_SEED=N draws another set, to look
// for tests that only pass on the default one (see README, "Quick start").

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include <ATen/Context.h>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

int main(int argc, char** argv) {
  ::testing::InitGoogleMock(&argc, argv);
  uint64_t seed = 1;
  if (const char* text = std::getenv("INVNET_TEST_SEED"); text != nullptr && *text != '\0') {
    char* end = nullptr;
    seed = std::strtoull(text, &end, 10);
    if (*end != '\0') {
      std::fprintf(stderr, "INVNET_TEST_SEED=%s: not a non-negative integer\n", text);
      return 2;
    }
    std::fprintf(stderr, "LibTorch's default generator seeded with INVNET_TEST_SEED=%llu\n",
                 static_cast<unsigned long long>(seed));
  }
  at::manual_seed(seed);
  return RUN_ALL_TESTS();
}
