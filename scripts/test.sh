#!/usr/bin/env bash
# The whole test suite on a fresh Debian 12 machine: install packages, configure, build, ctest.
# Usage: scripts/test.sh            (build directory: build/)
set -euo pipefail
cd "$(dirname "$0")/.."

stage() { printf '\n== %s (%s)\n' "$1" "$(date +%T)"; }

stage "install Debian packages"
scripts/install-deps.sh

stage "configure"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release

stage "build"
cmake --build build -j 2

stage "unit tests"
ctest --test-dir build --output-on-failure -j 2

stage "done"
