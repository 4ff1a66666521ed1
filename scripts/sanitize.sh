#!/usr/bin/env bash
# Builds the project with AddressSanitizer + UndefinedBehaviorSanitizer (GCC, INVNET_SANITIZE=ON)
# in build-asan/ and runs the unit, service, client and end-to-end tests under them. A finding
# stops the test that hit it (halt_on_error), so ctest fails. LibTorch, gRPC and protobuf are
# Debian's uninstrumented libraries; only invnet's own code is checked.
#   scripts/sanitize.sh [extra ctest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."

# Set before the build too: gtest_discover_tests runs every test binary when it is linked.
export ASAN_OPTIONS="${ASAN_OPTIONS:-}"
export LSAN_OPTIONS="suppressions=$PWD/tests/lsan_suppressions.txt:${LSAN_OPTIONS:-}"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:${UBSAN_OPTIONS:-}"

if [ ! -f build-asan/build.ninja ]; then
  # -O1, as the sanitizers' own docs suggest: the stage is mostly compile time (about 20 of its
  # 25 minutes at -O2 on the 2-core machine) and -O1 compiles faster while keeping the
  # instrumented tests quick; -g1 for line numbers in the sanitizers' stack traces.
  cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g1 -DNDEBUG" -DINVNET_SANITIZE=ON
fi
cmake --build build-asan -j 2

# The fault and soak tests run in full in the normal stage; here a few rounds and seconds check
# the same code paths under the sanitizers without tripling the stage's time.
export INVNET_FAULT_ROUNDS="${INVNET_FAULT_ROUNDS:-3}"
export INVNET_SOAK_SECONDS="${INVNET_SOAK_SECONDS:-10}"
ctest --test-dir build-asan --output-on-failure -j 2 "$@"
