#!/usr/bin/env bash
# The whole test suite on a fresh Debian 12 machine: install packages, configure, build, ctest,
# the client alone without LibTorch (build-client/), then the hostile-input stages (the tests again under ASan + UBSan in build-asan/, the libFuzzer
# targets for 30 s each in build-fuzz/), then build the Docker image and smoke-test it
# (docker/smoke-test.sh).
# Usage: scripts/test.sh [--no-docker] [--quick]     (build directory: build/)
#   --quick skips the sanitizer and fuzzing stages (for local iterations; CI runs everything).
set -euo pipefail
cd "$(dirname "$0")/.."
DOCKER=1
QUICK=0
for arg in "$@"; do
  case "$arg" in
    --no-docker) DOCKER=0 ;;
    --quick) QUICK=1 ;;
    *) echo "usage: scripts/test.sh [--no-docker] [--quick]" >&2; exit 2 ;;
  esac
done

stage() { printf '\n== %s (%s)\n' "$1" "$(date +%T)"; }

stage "install Debian packages"
DEPS_FLAGS=()
[ "$DOCKER" = 1 ] && DEPS_FLAGS+=(--with-container-tools)
[ "$QUICK" = 0 ] && DEPS_FLAGS+=(--with-fuzzing)
scripts/install-deps.sh "${DEPS_FLAGS[@]}"

stage "configure"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release

stage "build"
cmake --build build -j 2

stage "unit, service and end-to-end tests"
ctest --test-dir build --output-on-failure -j 2

# The client side on its own, with LibTorch (and the server's glog) made unfindable: proves
# that proto/ and client/ build and pass their tests on a machine without LibTorch.
stage "client without LibTorch: configure, build and its tests (build-client)"
cmake -S . -B build-client -G Ninja -DCMAKE_BUILD_TYPE=Release -DINVNET_CLIENT_ONLY=ON \
  -DCMAKE_DISABLE_FIND_PACKAGE_Torch=ON -DCMAKE_DISABLE_FIND_PACKAGE_glog=ON
cmake --build build-client -j 2
ctest --test-dir build-client --output-on-failure -j 2

if [ "$QUICK" = 0 ]; then
  stage "ASan + UBSan: build and tests (build-asan)"
  scripts/sanitize.sh

  stage "libFuzzer targets: build and 30 s each (build-fuzz)"
  scripts/fuzz.sh 30
fi

if [ "$DOCKER" = 1 ]; then
  stage "Docker image: build and smoke test"
  docker/smoke-test.sh
fi

stage "done"
