#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz, clang, ASan + UBSan) in build-fuzz/ and runs each of
# them for a while on a scratch copy of its committed seed corpus (tests/fuzz/corpus/<target>/).
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]   default: 30 s each, all four targets
#   scripts/fuzz.sh --runs=N [TARGET...]                N executions each (the long run: 1000000)
# Exit status 1 on the first crash or sanitizer finding; the reproducer is left in
# build-fuzz/findings/ (rerun one with build-fuzz/tests/fuzz/<target> FILE). New interesting
# inputs go to build-fuzz/corpus/<target>/, never into the committed seeds.
set -euo pipefail
cd "$(dirname "$0")/.."

LIMIT="-max_total_time=30"
if [[ "${1:-}" =~ ^--runs=([0-9]+)$ ]]; then
  LIMIT="-runs=${BASH_REMATCH[1]}"
  shift
elif [[ "${1:-}" =~ ^[0-9]+$ ]]; then
  LIMIT="-max_total_time=$1"
  shift
fi
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(tensor_codec spec_codec checkpoint dataset_assembly)

if [ ! -f build-fuzz/build.ninja ]; then
  # -O1 -g1: quick to compile, line numbers in reports (most of the time goes to LibTorch, which
  # runs at Debian's optimisation either way).
  CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g1" -DINVNET_FUZZ=ON
fi
cmake --build build-fuzz -j 2 --target invnet_fuzzers

export ASAN_OPTIONS="abort_on_error=1:${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:${UBSAN_OPTIONS:-}"
# One LibTorch thread: the targets are single-input and OpenMP threads only cost time here.
export OMP_NUM_THREADS=1

mkdir -p build-fuzz/findings
for target in "${TARGETS[@]}"; do
  corpus="build-fuzz/corpus/$target"
  mkdir -p "$corpus"
  printf '\n== fuzz %s (%s)\n' "$target" "$LIMIT"
  # -rss_limit_mb: a target's peak RSS is ~0.8 GB (LibTorch, ASan's shadow memory and
  # quarantine), so libFuzzer's default of 2 GB would leave a hostile input little room.
  # grep hides libFuzzer's per-input progress lines; the exit status is the fuzzer's.
  set +e
  "build-fuzz/tests/fuzz/${target}_fuzz" "$corpus" "tests/fuzz/corpus/$target" \
    "$LIMIT" -rss_limit_mb=4096 -print_final_stats=1 \
    -artifact_prefix="build-fuzz/findings/${target}-" 2>&1 |
    grep -v -E '^(#[0-9]+[[:space:]]+(NEW|REDUCE|pulse)|[[:space:]]+NEW_FUNC)'
  status=${PIPESTATUS[0]}
  set -e
  if [ "$status" -ne 0 ]; then
    echo "fuzz.sh: $target failed (exit $status); reproducer in build-fuzz/findings/" >&2
    exit 1
  fi
done
