#!/usr/bin/env bash
# The whole test suite on a fresh Debian 12 machine: install packages, configure, build, ctest,
# then build the Docker image and smoke-test it (docker/smoke-test.sh).
# Usage: scripts/test.sh [--no-docker]     (build directory: build/)
set -euo pipefail
cd "$(dirname "$0")/.."
DOCKER=1
[ "${1:-}" = "--no-docker" ] && DOCKER=0

stage() { printf '\n== %s (%s)\n' "$1" "$(date +%T)"; }

stage "install Debian packages"
if [ "$DOCKER" = 1 ]; then
  scripts/install-deps.sh --with-container-tools
else
  scripts/install-deps.sh
fi

stage "configure"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release

stage "build"
cmake --build build -j 2

stage "unit, service and end-to-end tests"
ctest --test-dir build --output-on-failure -j 2

if [ "$DOCKER" = 1 ]; then
  stage "Docker image: build and smoke test"
  docker/smoke-test.sh
fi

stage "done"
