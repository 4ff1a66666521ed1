#include "models/blas_setup.h"

#include <dlfcn.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace invnet {
namespace {

// OpenBLAS kernels that predate AVX2; with one of these on an AVX2 machine, the detection failed.
bool IsGenericKernel(const char* name) {
  for (const char* generic : {"Prescott", "Core2", "Penryn", "Dunnington", "Nehalem", "Katmai",
                              "Atom", "Barcelona", "Unknown"}) {
    if (strcasecmp(name, generic) == 0) return true;
  }
  return false;
}

}  // namespace

std::string EnsureOptimizedBlas(char** argv) {
  using CoreName = char* (*)();
  auto core_name = reinterpret_cast<CoreName>(dlsym(RTLD_DEFAULT, "openblas_get_corename"));
  if (core_name == nullptr) return "BLAS: not OpenBLAS";
  const char* current = core_name();
  if (std::getenv("OPENBLAS_CORETYPE") != nullptr) {
    return absl::StrCat("BLAS: OpenBLAS ", current, " (OPENBLAS_CORETYPE=",
                        std::getenv("OPENBLAS_CORETYPE"), ")");
  }
  __builtin_cpu_init();
  const char* wanted = nullptr;
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq")) {
    wanted = "SkylakeX";
  } else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    wanted = "Haswell";
  }
  if (wanted == nullptr || !IsGenericKernel(current)) {
    return absl::StrCat("BLAS: OpenBLAS ", current);
  }
  setenv("OPENBLAS_CORETYPE", wanted, /*overwrite=*/1);
  // The binary's real path, not /proc/self/exe: the process keeps its name (ps, pgrep).
  char path[4096];
  const ssize_t length = readlink("/proc/self/exe", path, sizeof(path) - 1);
  if (length > 0) {
    path[length] = '\0';
    execv(path, argv);
  }
  // Only reached when the re-execution failed: carry on with the generic kernels.
  return absl::StrCat("BLAS: OpenBLAS ", current, " (could not switch to ", wanted, ")");
}

}  // namespace invnet
