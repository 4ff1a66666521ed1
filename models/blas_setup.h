#ifndef INVNET_MODELS_BLAS_SETUP_H_
#define INVNET_MODELS_BLAS_SETUP_H_

// OpenBLAS picks its kernels from the processor's model number. On virtual machines that hide
// the model ("Intel Xeon Processor") it falls back to its oldest x86-64 kernels (Prescott, SSE3),
// which made LibTorch's matrix products 2-3x slower here. The kernel choice is made when the
// library loads, before main(), and can only be overridden through the environment variable
// OPENBLAS_CORETYPE.
//
// EnsureOptimizedBlas, called first thing in main() of a program that does numerical work:
// when OpenBLAS is loaded with a generic kernel although the processor supports AVX-512 or
// AVX2 + FMA, it sets OPENBLAS_CORETYPE (SkylakeX or Haswell) and re-executes the program with
// the same arguments (same PID). It does nothing when OPENBLAS_CORETYPE is already set (by the
// user, or by the first execution), when OpenBLAS is not the loaded BLAS, or when the detected
// kernel is already a modern one. It returns a line describing what it found, for logs.

#include <string>

namespace invnet {

std::string EnsureOptimizedBlas(char** argv);

}  // namespace invnet

#endif  // INVNET_MODELS_BLAS_SETUP_H_
