#!/usr/bin/env bash
# Installs every Debian 12 package invnet needs to build and test. Idempotent.
#   scripts/install-deps.sh                          build and unit/e2e tests (also the image's
#                                                    build stage)
#   scripts/install-deps.sh --with-container-tools   plus buildah, podman and debootstrap for
#                                                    the Docker smoke test on machines without
#                                                    a Docker engine
#   scripts/install-deps.sh --with-fuzzing           plus clang and its compiler-rt (libFuzzer,
#                                                    sanitizer runtimes) for scripts/fuzz.sh
# The flags combine.
set -euo pipefail

PACKAGES=(
  g++ cmake ninja-build pkg-config git
  libtorch-dev libopenblas0-openmp   # LibTorch; without OpenBLAS it falls back to a 15x slower BLAS
  libabsl-dev
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libgoogle-glog-dev
  libgtest-dev libgmock-dev
  libexpat1-dev                      # tests only: parsing the report's SVG figures
  openssl                            # tests only: throw-away certificates for the TLS tests
  python3-grpcio python3-protobuf    # the Python interoperability test (stubs come from protoc)
)

for arg in "$@"; do
  case "$arg" in
    --with-container-tools) PACKAGES+=(buildah podman debootstrap) ;;
    # clang 14 is bookworm's default; -fsanitize=fuzzer needs libclang_rt.fuzzer from
    # libclang-rt-14-dev, which clang only recommends.
    --with-fuzzing) PACKAGES+=(clang libclang-rt-14-dev) ;;
    *) echo "install-deps.sh: unknown flag $arg" >&2; exit 2 ;;
  esac
done

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q "${PACKAGES[@]}"
