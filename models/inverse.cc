#include "models/inverse.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include "absl/strings/str_cat.h"
#include "models/fast_math.h"
#include "models/iresnet.h"
#include "models/tensor_checks.h"
#include "models/torch_status.h"

namespace invnet {
namespace {

// Runs body(begin, end) over [0, count): on the calling thread when there is a single item (a
// small request; entering a parallel region from many request threads at once would only make
// them contend), otherwise spread over LibTorch's intra-op threads.
template <typename F>
void ForEachChunk(int64_t count, const F& body) {
  if (count <= 1) {
    body(0, count);
    return;
  }
  at::parallel_for(0, count, 1, body);
}

// A sample whose residual has not improved for this many iterations has reached the rounding
// floor of its precision; iterating on cannot meet the tolerance, so it stops unconverged.
constexpr int64_t kStallWindow = 30;
// Rounds of the solve between two calls of InverseOptions::should_stop, counted over all
// blocks of a chunk (a chunk often converges in fewer rounds per block than this).
constexpr int64_t kStopPollRounds = 32;

bool StopRequested(const std::function<bool()>& should_stop) {
  return should_stop && should_stop();
}

// ---------------------------------------------------------------------------------------------
// Kernels. Each is compiled twice, for AVX2 + FMA and for baseline x86-64, and the AVX2 version
// is chosen at run time when the processor has it (checked once), so the binary runs anywhere.
// (GCC's target_clones("arch=haswell") dispatches on the CPU model, which virtual machines often
// hide; the explicit feature check does not have that problem.)

bool HasAvx2Fma() {
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return has;
}

// 256-bit vectors in GCC's vector extension: explicit SIMD without intrinsics. In the baseline
// build the compiler splits each into two 128-bit SSE2 operations.
typedef float Float8 __attribute__((vector_size(32)));
typedef double Double4 __attribute__((vector_size(32)));
template <typename T>
struct VectorOf;
template <>
struct VectorOf<float> {
  using type = Float8;
};
template <>
struct VectorOf<double> {
  using type = Double4;
};
template <typename T>
using Vec = typename VectorOf<T>::type;
template <typename T>
constexpr int kLanes = 32 / sizeof(T);

template <typename T>
__attribute__((always_inline)) inline Vec<T> LoadVec(const T* p) {
  Vec<T> v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

// One tile of y = x W^T + b: kRows rows starting at r by kVecs vectors of columns starting at
// j0. The kRows * kVecs accumulators stay in registers for the whole reduction over `in`; each
// step loads kVecs vectors of W^T and broadcasts one x per row. Several independent accumulators
// hide the latency of the fused multiply-add chains. Every output element is computed by the
// same sequence of operations whatever the tile's shape, so results do not depend on a sample's
// batch-mates.
template <typename T, int kRows, int kVecs>
__attribute__((always_inline)) inline void DenseTile(const T* __restrict weight_t,
                                                     const T* __restrict bias, int64_t in,
                                                     int64_t out, const T* __restrict x,
                                                     int64_t r, int64_t j0, T* __restrict y) {
  constexpr int L = kLanes<T>;
  Vec<T> acc[kRows][kVecs];
  for (int v = 0; v < kVecs; ++v) {
    const Vec<T> b = LoadVec(bias + j0 + v * L);
    for (int a = 0; a < kRows; ++a) acc[a][v] = b;
  }
  for (int64_t i = 0; i < in; ++i) {
    Vec<T> w[kVecs];
    for (int v = 0; v < kVecs; ++v) w[v] = LoadVec(weight_t + i * out + j0 + v * L);
    for (int a = 0; a < kRows; ++a) {
      const T xv = x[(r + a) * in + i];
      for (int v = 0; v < kVecs; ++v) acc[a][v] += xv * w[v];
    }
  }
  for (int a = 0; a < kRows; ++a) {
    for (int v = 0; v < kVecs; ++v) {
      std::memcpy(y + (r + a) * out + j0 + v * L, &acc[a][v], sizeof(Vec<T>));
    }
  }
}

// Sum of a vector's lanes, in a fixed order.
template <typename T>
__attribute__((always_inline)) inline T LaneSum(const Vec<T>& v) {
  T lanes[kLanes<T>];
  std::memcpy(lanes, &v, sizeof(v));
  T sum = lanes[0];
  for (int l = 1; l < kLanes<T>; ++l) sum += lanes[l];
  return sum;
}

// Columns [j_begin, out) of rows [r, r + kRows): each output a dot product of an input row with
// a weight row, vectorised along `in`. This serves what the column tiles leave over, above all
// narrow layers such as a block's output layer (out = n, often 2), where an axpy over the
// outputs would be a long serial chain of scalar multiply-adds.
template <typename T, int kRows>
__attribute__((always_inline)) inline void DenseDots(const T* __restrict weight,
                                                     const T* __restrict bias, int64_t in,
                                                     int64_t out, const T* __restrict x,
                                                     int64_t r, int64_t j_begin,
                                                     T* __restrict y) {
  constexpr int L = kLanes<T>;
  const int64_t full_in = in / L * L;
  for (int64_t j = j_begin; j < out; ++j) {
    const T* __restrict w = weight + j * in;
    Vec<T> acc[kRows] = {};
    for (int64_t i = 0; i < full_in; i += L) {
      const Vec<T> wv = LoadVec(w + i);
      for (int a = 0; a < kRows; ++a) acc[a] += LoadVec(x + (r + a) * in + i) * wv;
    }
    for (int a = 0; a < kRows; ++a) {
      T sum = LaneSum<T>(acc[a]);
      for (int64_t i = full_in; i < in; ++i) sum += x[(r + a) * in + i] * w[i];
      y[(r + a) * out + j] = bias[j] + sum;
    }
  }
}

// y[rows, out] = x[rows, in] W^T + b.
template <typename T>
__attribute__((always_inline)) inline void DenseForwardImpl(const T* __restrict weight_t,
                                                            const T* __restrict weight,
                                                            const T* __restrict bias, int64_t in,
                                                            int64_t out, const T* __restrict x,
                                                            int64_t rows, T* __restrict y) {
  // Six rows by two vectors of columns for batches (12 accumulators: the most that leave
  // registers for the weights); a single row gets eight vectors where the layer is that wide,
  // so its FMA chains are independent enough to run at full throughput.
  constexpr int kRows = 6;
  constexpr int kCols = 2 * kLanes<T>;
  constexpr int kWideCols = 8 * kLanes<T>;
  const int64_t full_cols = out / kCols * kCols;
  int64_t r = 0;
  for (; r + kRows <= rows; r += kRows) {
    for (int64_t j0 = 0; j0 < full_cols; j0 += kCols) {
      DenseTile<T, kRows, 2>(weight_t, bias, in, out, x, r, j0, y);
    }
    if (full_cols < out) DenseDots<T, kRows>(weight, bias, in, out, x, r, full_cols, y);
  }
  for (; r < rows; ++r) {
    int64_t j0 = 0;
    for (; j0 + kWideCols <= full_cols; j0 += kWideCols) {
      DenseTile<T, 1, 8>(weight_t, bias, in, out, x, r, j0, y);
    }
    for (; j0 < full_cols; j0 += kCols) DenseTile<T, 1, 2>(weight_t, bias, in, out, x, r, j0, y);
    if (full_cols < out) DenseDots<T, 1>(weight, bias, in, out, x, r, full_cols, y);
  }
}

template <typename T>
__attribute__((target("avx2,fma"))) void DenseForwardAvx2(const T* weight_t, const T* weight,
                                                          const T* bias, int64_t in, int64_t out,
                                                          const T* x, int64_t rows, T* y) {
  DenseForwardImpl(weight_t, weight, bias, in, out, x, rows, y);
}

template <typename T>
void DenseForwardBaseline(const T* weight_t, const T* weight, const T* bias, int64_t in,
                          int64_t out, const T* x, int64_t rows, T* y) {
  DenseForwardImpl(weight_t, weight, bias, in, out, x, rows, y);
}

// Layers at least this large (in * out), applied to at least kBlasMinRows rows, go to the BLAS
// (OpenBLAS through LibTorch): its packed, cache-blocked GEMM beats the register tiles above
// once the weights no longer fit in L1, e.g. 2.5x on the 256-wide blur64 network. Small layers
// and few rows stay on the tiles, which have no call overhead.
constexpr int64_t kBlasMinWork = 128 * 128;
constexpr int64_t kBlasMinRows = 8;

template <typename T>
void DenseForward(const FrozenIResNet::DenseLayer<T>& layer, const T* x, int64_t rows, T* y) {
  if (rows >= kBlasMinRows && layer.in * layer.out >= kBlasMinWork) {
    const auto dtype = std::is_same<T, float>::value ? at::kFloat : at::kDouble;
    at::Tensor out = at::from_blob(y, {rows, layer.out}, dtype);
    at::addmm_out(out,
                  at::from_blob(const_cast<T*>(layer.bias.data()), {layer.out}, dtype),
                  at::from_blob(const_cast<T*>(x), {rows, layer.in}, dtype),
                  at::from_blob(const_cast<T*>(layer.weight_t.data()), {layer.in, layer.out},
                                dtype));
    return;
  }
  if (HasAvx2Fma()) {
    DenseForwardAvx2(layer.weight_t.data(), layer.weight.data(), layer.bias.data(), layer.in,
                     layer.out, x, rows, y);
  } else {
    DenseForwardBaseline(layer.weight_t.data(), layer.weight.data(), layer.bias.data(), layer.in,
                         layer.out, x, rows, y);
  }
}

// Same formulas as ApplyActivation (activation.cc) evaluates through LibTorch, with the
// vectorisable exp/expm1 of fast_math.h where they matter (see its accuracy note).
template <typename T>
__attribute__((always_inline)) inline void ActivateInPlaceImpl(Activation activation, T* __restrict z, int64_t count) {
  switch (activation) {
    case Activation::kElu:
      for (int64_t i = 0; i < count; ++i) {
        const T v = z[i];
        const T negative = fast_math::Expm1(v < T(0) ? v : T(0));
        z[i] = v > T(0) ? v : negative;
      }
      return;
    case Activation::kTanh:
      for (int64_t i = 0; i < count; ++i) {
        // tanh(v) = sign(v) (1 - e) / (1 + e), e = exp(-2|v|), without cancellation issues for
        // large |v|; near 0 use expm1: (1 - e) = -expm1(-2|v|).
        const T a = z[i] < T(0) ? -z[i] : z[i];
        const T m = fast_math::Expm1(T(-2) * a);
        const T t = -m / (T(2) + m);
        z[i] = z[i] < T(0) ? -t : t;
      }
      return;
    case Activation::kSoftplus:
      // LibTorch's softplus returns x itself above the threshold 20.
      for (int64_t i = 0; i < count; ++i) {
        z[i] = z[i] > T(20) ? z[i] : std::log1p(std::exp(z[i]));
      }
      return;
    case Activation::kLipSwish:
      for (int64_t i = 0; i < count; ++i) {
        z[i] = z[i] / (T(1) + fast_math::Exp(-z[i])) / T(1.1);
      }
      return;
  }
}

template <typename T>
__attribute__((target("avx2,fma"))) void ActivateInPlaceAvx2(Activation activation, T* z,
                                                             int64_t count) {
  ActivateInPlaceImpl(activation, z, count);
}

template <typename T>
void ActivateInPlace(Activation activation, T* z, int64_t count) {
  if (HasAvx2Fma()) {
    ActivateInPlaceAvx2(activation, z, count);
  } else {
    ActivateInPlaceImpl(activation, z, count);
  }
}

// Scratch memory for one chunk: two hidden-layer buffers.
template <typename T>
struct MlpScratch {
  MlpScratch(int64_t rows, int64_t width) : a(rows * width), b(rows * width) {}
  std::vector<T> a;
  std::vector<T> b;
};

// out[rows, dim] = g(in[rows, dim]) for one block.
template <typename T>
void EvaluateResidual(const FrozenIResNet::Block<T>& block, Activation activation, const T* in,
                      int64_t rows, T* out, MlpScratch<T>& scratch) {
  const T* h = in;
  for (size_t l = 0; l < block.size(); ++l) {
    const auto& layer = block[l];
    const bool last = l + 1 == block.size();
    T* dst = last ? out : (l % 2 == 0 ? scratch.a.data() : scratch.b.data());
    DenseForward(layer, h, rows, dst);
    if (!last) ActivateInPlace(activation, dst, rows * layer.out);
    h = dst;
  }
}

// Per-sample Anderson acceleration state (type II, Walker & Ni 2011), memory m over vectors of
// length n, for up to `rows` samples. History columns are differences of residuals f = T(u) - u
// and of images T(u) between consecutive iterations.
template <typename T>
class AndersonState {
 public:
  AndersonState(int64_t rows, int64_t n, int64_t memory)
      : n_(n),
        m_(std::max<int64_t>(1, std::min(memory, n))),
        d_f_(rows * m_ * n),
        d_g_(rows * m_ * n),
        f_prev_(rows * n),
        g_prev_(rows * n),
        norm_prev_(rows, 0.0),
        count_(rows, 0),
        head_(rows, 0),
        has_prev_(rows, false) {}

  void Reset() {
    std::fill(count_.begin(), count_.end(), 0);
    std::fill(head_.begin(), head_.end(), 0);
    std::fill(has_prev_.begin(), has_prev_.end(), false);
  }

  // Given the current iterate u (overwritten with the next one), its image tu = T(u) and the
  // residual norm, computes the next iterate of sample s.
  void Step(int64_t s, T* u, const T* tu, double residual_norm) {
    const int64_t n = n_;
    T* f_prev = &f_prev_[s * n];
    T* g_prev = &g_prev_[s * n];
    if (has_prev_[s]) {
      if (residual_norm > norm_prev_[s]) {
        count_[s] = 0;  // the residual grew: drop the history (safeguard), take a plain step
        head_[s] = 0;
      } else {
        T* df = &d_f_[(s * m_ + head_[s]) * n];
        T* dg = &d_g_[(s * m_ + head_[s]) * n];
        for (int64_t i = 0; i < n; ++i) {
          T f = tu[i] - u[i];
          df[i] = f - f_prev[i];
          dg[i] = tu[i] - g_prev[i];
        }
        head_[s] = (head_[s] + 1) % m_;
        count_[s] = std::min<int64_t>(count_[s] + 1, m_);
      }
    }
    for (int64_t i = 0; i < n; ++i) {
      f_prev[i] = tu[i] - u[i];
      g_prev[i] = tu[i];
    }
    norm_prev_[s] = residual_norm;
    has_prev_[s] = true;

    const int64_t k = count_[s];
    double gamma[16];
    if (k == 0 || !SolveLeastSquares(s, f_prev, gamma)) {
      std::copy(tu, tu + n, u);
      return;
    }
    for (int64_t i = 0; i < n; ++i) {
      double next = tu[i];
      for (int64_t c = 0; c < k; ++c) next -= gamma[c] * d_g_[(s * m_ + c) * n + i];
      u[i] = static_cast<T>(next);
    }
  }

 private:
  // gamma = argmin || f - dF gamma || by regularised normal equations (k <= 8 columns).
  bool SolveLeastSquares(int64_t s, const T* f, double* gamma) const {
    const int64_t k = count_[s];
    const int64_t n = n_;
    double a[8][9];
    double trace = 0.0;
    for (int64_t r = 0; r < k; ++r) {
      const T* col_r = &d_f_[(s * m_ + r) * n];
      for (int64_t c = 0; c <= r; ++c) {
        const T* col_c = &d_f_[(s * m_ + c) * n];
        double dot = 0.0;
        for (int64_t i = 0; i < n; ++i) dot += double(col_r[i]) * col_c[i];
        a[r][c] = a[c][r] = dot;
      }
      double rhs = 0.0;
      for (int64_t i = 0; i < n; ++i) rhs += double(col_r[i]) * f[i];
      a[r][k] = rhs;
      trace += a[r][r];
    }
    if (!(trace > 0.0) || !std::isfinite(trace)) return false;
    for (int64_t r = 0; r < k; ++r) a[r][r] += 1e-10 * trace;
    // Gaussian elimination with partial pivoting on the k x (k+1) system.
    for (int64_t c = 0; c < k; ++c) {
      int64_t pivot = c;
      for (int64_t r = c + 1; r < k; ++r) {
        if (std::abs(a[r][c]) > std::abs(a[pivot][c])) pivot = r;
      }
      if (std::abs(a[pivot][c]) < 1e-300) return false;
      if (pivot != c) {
        for (int64_t j = 0; j <= k; ++j) std::swap(a[c][j], a[pivot][j]);
      }
      for (int64_t r = c + 1; r < k; ++r) {
        double factor = a[r][c] / a[c][c];
        for (int64_t j = c; j <= k; ++j) a[r][j] -= factor * a[c][j];
      }
    }
    for (int64_t r = k - 1; r >= 0; --r) {
      double sum = a[r][k];
      for (int64_t j = r + 1; j < k; ++j) sum -= a[r][j] * gamma[j];
      gamma[r] = sum / a[r][r];
      if (!std::isfinite(gamma[r])) return false;
    }
    // The ring buffer's column order does not matter: dF and dG use the same slots.
    return true;
  }

  int64_t n_;
  int64_t m_;
  std::vector<T> d_f_;
  std::vector<T> d_g_;
  std::vector<T> f_prev_;
  std::vector<T> g_prev_;
  std::vector<double> norm_prev_;
  std::vector<int64_t> count_;
  std::vector<int64_t> head_;
  std::vector<bool> has_prev_;
};

constexpr int64_t kMaxAndersonMemory = 8;

// An InverseResult for y [batch, n], to be filled in.
InverseResult AllocateResult(const at::Tensor& y) {
  const int64_t batch = y.size(0);
  InverseResult result;
  result.x = at::empty_like(y);
  result.iterations = at::zeros({batch}, at::kLong);
  result.converged = at::ones({batch}, at::kBool);
  result.error_bound = at::zeros({batch}, at::kDouble);
  result.forward_residual = at::zeros({batch}, at::kDouble);
  return result;
}

}  // namespace

absl::Status ValidateInverseOptions(const InverseOptions& options) {
  if (!(options.tolerance > 0.0) || !std::isfinite(options.tolerance)) {
    return absl::InvalidArgumentError(
        absl::StrCat("solver.tolerance: ", options.tolerance, " must be positive and finite"));
  }
  if (options.max_iterations < 1 || options.max_iterations > 1000000) {
    return absl::InvalidArgumentError(absl::StrCat(
        "solver.max_iterations: ", options.max_iterations, " must lie in [1, 1000000]"));
  }
  if (options.anderson &&
      (options.anderson_memory < 1 || options.anderson_memory > kMaxAndersonMemory)) {
    return absl::InvalidArgumentError(absl::StrCat("solver.anderson_memory: ",
                                                   options.anderson_memory, " must lie in [1, ",
                                                   kMaxAndersonMemory, "]"));
  }
  if (options.chunk_size < 0) {
    return absl::InvalidArgumentError("solver.chunk_size: must be >= 0 (0 = automatic)");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<const FrozenIResNet>> FrozenIResNet::Create(
    const IResNet& network, Bounds bounds) {
  return GuardTorchOr<std::shared_ptr<const FrozenIResNet>>(
      "FrozenIResNet::Create", [&]() -> absl::StatusOr<std::shared_ptr<const FrozenIResNet>> {
        std::vector<double> block_bounds;
        std::vector<std::vector<double>> layer_sigmas;  // empty unless certified
        if (bounds == Bounds::kCertified) {
          LipschitzCertificate certificate = network.Certify();
          block_bounds = certificate.block_bounds;
          layer_sigmas = certificate.layer_sigmas;
        } else {
          block_bounds = network.EstimatedBlockBounds();
        }
        for (size_t k = 0; k < block_bounds.size(); ++k) {
          if (!(block_bounds[k] < 1.0)) {
            return absl::FailedPreconditionError(
                absl::StrCat("network is not invertible: block ", k, " has Lipschitz bound ",
                             block_bounds[k], " >= 1"));
          }
        }
        std::shared_ptr<FrozenIResNet> frozen(new FrozenIResNet());
        frozen->dim_ = network.dim();
        frozen->hidden_width_ = network.config().hidden_width;
        frozen->activation_ = network.config().activation;
        frozen->block_lipschitz_ = block_bounds;
        frozen->activation_at_zero_ =
            network.config().activation == Activation::kSoftplus ? std::log(2.0) : 0.0;
        const auto effective = network.EffectiveWeights();
        for (size_t k = 0; k < effective.size(); ++k) {
          const auto& block = effective[k];
          Block<float> b32;
          Block<double> b64;
          std::vector<LayerNorms> norms;
          for (size_t l = 0; l < block.size(); ++l) {
            const auto& layer = block[l];
            const double frobenius = layer.weight.to(at::kDouble).norm().item<double>();
            norms.push_back({layer_sigmas.empty() ? frobenius : layer_sigmas[k][l], frobenius,
                             layer.bias.to(at::kDouble).norm().item<double>(),
                             layer.weight.size(1), layer.weight.size(0)});
            at::Tensor w = layer.weight.contiguous().to(at::kDouble);
            at::Tensor wt = layer.weight.t().contiguous().to(at::kDouble);
            at::Tensor bias = layer.bias.contiguous().to(at::kDouble);
            DenseLayer<double> d;
            d.out = layer.weight.size(0);
            d.in = layer.weight.size(1);
            d.weight_t.assign(wt.data_ptr<double>(), wt.data_ptr<double>() + wt.numel());
            d.weight.assign(w.data_ptr<double>(), w.data_ptr<double>() + w.numel());
            d.bias.assign(bias.data_ptr<double>(), bias.data_ptr<double>() + bias.numel());
            DenseLayer<float> f;
            f.in = d.in;
            f.out = d.out;
            f.weight_t.assign(d.weight_t.begin(), d.weight_t.end());
            f.weight.assign(d.weight.begin(), d.weight.end());
            f.bias.assign(d.bias.begin(), d.bias.end());
            b32.push_back(std::move(f));
            b64.push_back(std::move(d));
          }
          frozen->blocks_f32_.push_back(std::move(b32));
          frozen->blocks_f64_.push_back(std::move(b64));
          frozen->layer_norms_.push_back(std::move(norms));
        }
        return std::shared_ptr<const FrozenIResNet>(std::move(frozen));
      });
}

template <>
const std::vector<FrozenIResNet::Block<float>>& FrozenIResNet::blocks<float>() const {
  return blocks_f32_;
}
template <>
const std::vector<FrozenIResNet::Block<double>>& FrozenIResNet::blocks<double>() const {
  return blocks_f64_;
}

int64_t FrozenIResNet::ChunkSize(const InverseOptions& options, int64_t batch) const {
  if (options.chunk_size > 0) return options.chunk_size;
  // Keep a chunk's hidden activations (two buffers) within about 0.5 MiB of cache, but give every
  // thread work: no fewer chunks than threads.
  const int64_t by_cache = std::clamp<int64_t>(65536 / std::max(hidden_width_, dim_), 8, 1024);
  const int64_t threads = std::max(1, at::get_num_threads());
  return std::max<int64_t>(1, std::min(by_cache, (batch + threads - 1) / threads));
}

template <typename T>
void FrozenIResNet::ForwardChunk(const T* x, int64_t rows, T* out) const {
  const int64_t n = dim_;
  std::vector<T> g(rows * n);
  MlpScratch<T> scratch(rows, std::max(hidden_width_, n));
  std::copy(x, x + rows * n, out);
  for (const Block<T>& block : blocks<T>()) {
    EvaluateResidual(block, activation_, out, rows, g.data(), scratch);
    for (int64_t i = 0; i < rows * n; ++i) out[i] += g[i];
  }
}

double FrozenIResNet::ResidualRoundingBound(int64_t k, double u_norm, double v_norm,
                                            double eps) const {
  // Forward error analysis of h_l = act(W_l h_{l-1} + b_l): a product with fan-in m carries at
  // most gamma_{m+1} (|W| |h| + |b|) <= gamma_{m+1} (||W||_F ||h|| + ||b||) (Higham, Accuracy and
  // Stability of Numerical Algorithms, 3.5; any summation order, with or without FMA), the
  // activations at most 8 eps (|z| + 1) per element (fast_math.h: ~2 ulp), and errors made in
  // earlier layers grow by at most sigma(W_l) through later ones (activations are 1-Lipschitz).
  // Magnitudes: ||z_l|| <= sigma(W_l) ||h|| + ||b||, ||act(z)|| <= ||z|| + |act(0)| sqrt(width).
  auto gamma = [eps](int64_t m) {
    const double me = static_cast<double>(m) * eps;
    return me / (1.0 - me);
  };
  double magnitude = u_norm;
  double error = 0.0;
  const std::vector<LayerNorms>& layers = layer_norms_[k];
  for (size_t l = 0; l < layers.size(); ++l) {
    const LayerNorms& layer = layers[l];
    const double z = layer.sigma * magnitude + layer.bias_norm;
    error = layer.sigma * error + gamma(layer.in + 1) * (layer.frobenius * magnitude + layer.bias_norm);
    const double width_root = std::sqrt(static_cast<double>(layer.out));
    if (l + 1 < layers.size()) {
      error += 8.0 * eps * (z + width_root);
      magnitude = z + activation_at_zero_ * width_root;
    } else {
      magnitude = z;
    }
  }
  // v - g(u), and the residual's norm from it (a difference, n squares and their sum).
  error += gamma(dim_ + 6) * (v_norm + magnitude + u_norm);
  return 2.0 * error;  // a factor of safety over the first-order analysis
}

void FrozenIResNet::ForwardChunkWithRounding(const double* x, int64_t rows, double* out,
                                             double* rounding) const {
  const int64_t n = dim_;
  const double eps = std::numeric_limits<double>::epsilon();
  std::vector<double> g(rows * n);
  MlpScratch<double> scratch(rows, std::max(hidden_width_, n));
  std::copy(x, x + rows * n, out);
  std::fill(rounding, rounding + rows, 0.0);
  for (int64_t k = 0; k < num_blocks(); ++k) {
    for (int64_t r = 0; r < rows; ++r) {
      double sq = 0.0;
      for (int64_t i = 0; i < n; ++i) sq += out[r * n + i] * out[r * n + i];
      const double h = std::sqrt(sq) * (1.0 + 2.0 * n * eps);
      // Earlier errors grow by Lip(Id + g_k) <= 1 + L_k; this block adds its own.
      rounding[r] = rounding[r] * (1.0 + block_lipschitz_[k]) +
                    ResidualRoundingBound(k, h + rounding[r], h + rounding[r], eps);
    }
    EvaluateResidual(blocks_f64_[k], activation_, out, rows, g.data(), scratch);
    for (int64_t i = 0; i < rows * n; ++i) out[i] += g[i];
  }
}

template <typename T>
absl::Status FrozenIResNet::SolveChunk(const T* y, int64_t rows, const InverseOptions& options,
                                       const std::vector<double>& block_tolerance,
                                       bool bound_rounding, T* x, int64_t* iterations,
                                       bool* converged, double* error_bound) const {
  const double eps = std::numeric_limits<T>::epsilon();
  const int64_t n = dim_;
  const auto& all_blocks = blocks<T>();
  std::vector<T> v(y, y + rows * n);  // right-hand side of the current block
  std::vector<T> u(rows * n);         // current iterate
  std::vector<T> packed(rows * n);    // active iterates, gathered contiguously
  std::vector<T> g(rows * n);         // g(packed)
  std::vector<T> image(n);            // T(u) = v - g(u) of one sample
  std::vector<int64_t> active(rows);
  std::vector<int64_t> block_iterations(rows);
  std::vector<double> block_bound(rows);
  std::vector<double> best_residual(rows);
  std::vector<double> v_norm(rows);  // ||v|| per sample: fixed within a block
  std::vector<int64_t> since_best(rows);
  MlpScratch<T> scratch(rows, std::max(hidden_width_, n));
  std::unique_ptr<AndersonState<T>> anderson;
  if (options.anderson) {
    anderson = std::make_unique<AndersonState<T>>(rows, n, options.anderson_memory);
  }
  std::fill(iterations, iterations + rows, 0);
  std::fill(converged, converged + rows, true);
  std::fill(error_bound, error_bound + rows, 0.0);

  int64_t rounds_since_poll = 0;
  for (int64_t k = num_blocks() - 1; k >= 0; --k) {
    const double lipschitz = block_lipschitz_[k];
    const double bound_factor = lipschitz / (1.0 - lipschitz);
    const double tolerance = block_tolerance[k];
    u = v;  // u_0 = v: exact when g vanishes, and within ||g(v)|| / (1 - L) of the solution
    for (int64_t s = 0; s < rows; ++s) active[s] = s;
    int64_t num_active = rows;
    std::fill(block_iterations.begin(), block_iterations.end(), 0);
    std::fill(best_residual.begin(), best_residual.end(), std::numeric_limits<double>::infinity());
    if (bound_rounding) {
      for (int64_t s = 0; s < rows; ++s) {
        double v_sq = 0.0;
        for (int64_t i = 0; i < n; ++i) v_sq += double(v[s * n + i]) * v[s * n + i];
        v_norm[s] = std::sqrt(v_sq);
      }
    }
    std::fill(since_best.begin(), since_best.end(), 0);
    if (anderson) anderson->Reset();

    while (num_active > 0) {
      // Asking is not free (a gRPC ServerContext takes a lock), so every 32nd round: a round
      // costs microseconds for small chunks and the whole chunk's work for large ones.
      if (++rounds_since_poll == kStopPollRounds) {
        rounds_since_poll = 0;
        if (StopRequested(options.should_stop)) {
          return absl::CancelledError("inverse: stopped on request");
        }
      }
      for (int64_t a = 0; a < num_active; ++a) {
        std::memcpy(&packed[a * n], &u[active[a] * n], n * sizeof(T));
      }
      EvaluateResidual(all_blocks[k], activation_, packed.data(), num_active, g.data(), scratch);
      int64_t still_active = 0;
      for (int64_t a = 0; a < num_active; ++a) {
        const int64_t s = active[a];
        T* us = &u[s * n];
        const T* vs = &v[s * n];
        const T* gs = &g[a * n];
        double residual_sq = 0.0;
        for (int64_t i = 0; i < n; ++i) {
          image[i] = vs[i] - gs[i];
          const double f = double(image[i]) - double(us[i]);
          residual_sq += f * f;
        }
        const double residual = std::sqrt(residual_sq);
        // ||T(u) - u*|| <= L / (1 - L) ||T(u) - u|| in exact arithmetic. With the rounding d of
        // the computed T(u): ||T_c(u) - u*|| <= (L ||T_c(u) - u|| + d) / (1 - L).
        double bound = bound_factor * residual;
        ++block_iterations[s];
        if (residual < best_residual[s]) {
          best_residual[s] = residual;
          since_best[s] = 0;
        } else {
          ++since_best[s];
        }
        bool last_round = block_iterations[s] >= options.max_iterations ||
                          since_best[s] >= kStallWindow;
        if (bound_rounding) {
          double u_sq = 0.0;
          for (int64_t i = 0; i < n; ++i) u_sq += double(us[i]) * us[i];
          const double rounding = ResidualRoundingBound(k, std::sqrt(u_sq), v_norm[s], eps);
          // Once the iteration's part is below the rounding's, more iterations cannot even
          // halve the bound: stop there rather than wait for the stall window.
          if (lipschitz * residual <= rounding) last_round = true;
          bound += rounding / (1.0 - lipschitz);
        }
        const bool met = bound <= tolerance;
        if (met || last_round) {
          std::copy(image.begin(), image.end(), us);  // return T(u), the point the bound is for
          block_bound[s] = bound;
          if (!met) converged[s] = false;
          continue;
        }
        if (anderson) {
          anderson->Step(s, us, image.data(), residual);
        } else {
          std::copy(image.begin(), image.end(), us);
        }
        active[still_active++] = s;
      }
      num_active = still_active;
    }
    for (int64_t s = 0; s < rows; ++s) {
      error_bound[s] = block_bound[s] + error_bound[s] / (1.0 - lipschitz);
      iterations[s] += block_iterations[s];
    }
    std::swap(u, v);  // this block's solution is the next block's right-hand side
  }
  std::copy(v.begin(), v.end(), x);
  return absl::OkStatus();
}

template <typename T>
absl::StatusOr<InverseResult> FrozenIResNet::CertifiedInverse(
    const at::Tensor& y_in, const InverseOptions& options) const {
  at::Tensor y = y_in.contiguous();
  const int64_t batch = y.size(0);
  const int64_t n = dim_;
  const bool rounded_output = !std::is_same<T, double>::value;
  // Block k's share: tol_k * prod_{j<k} 1/(1 - L_j) = reserve * tolerance / K.
  const double reserve = rounded_output ? 0.9 : 1.0;
  std::vector<double> block_tolerance(num_blocks());
  double growth = 1.0;  // prod_{j<k} 1/(1 - L_j)
  for (int64_t k = 0; k < num_blocks(); ++k) {
    block_tolerance[k] = reserve * options.tolerance / (num_blocks() * growth);
    growth /= 1.0 - block_lipschitz_[k];
  }
  const double inverse_lipschitz = growth;  // prod_k 1/(1 - L_k) >= Lip(phi^-1)

  InverseResult result = AllocateResult(y);
  const T* y_data = y.data_ptr<T>();
  T* x_data = result.x.data_ptr<T>();
  int64_t* iter_data = result.iterations.data_ptr<int64_t>();
  bool* conv_data = result.converged.data_ptr<bool>();
  double* bound_data = result.error_bound.data_ptr<double>();
  double* resid_data = result.forward_residual.data_ptr<double>();

  const int64_t chunk = ChunkSize(options, batch);
  const int64_t num_chunks = (batch + chunk - 1) / chunk;
  const double eps = std::numeric_limits<double>::epsilon();
  std::atomic<bool> stopped{false};
  ForEachChunk(num_chunks, [&](int64_t begin, int64_t end) {
    std::vector<double> y64, x64, returned, image, rounding;
    for (int64_t c = begin; c < end && !stopped.load(std::memory_order_relaxed); ++c) {
      if (c > begin && StopRequested(options.should_stop)) {
        stopped = true;
        return;
      }
      const int64_t first = c * chunk;
      const int64_t rows = std::min(chunk, batch - first);
      y64.assign(y_data + first * n, y_data + (first + rows) * n);
      x64.resize(rows * n);
      absl::Status status =
          SolveChunk<double>(y64.data(), rows, options, block_tolerance, /*bound_rounding=*/true,
                             x64.data(), iter_data + first, conv_data + first, bound_data + first);
      if (!status.ok()) {
        stopped = true;
        return;
      }
      // The answer as returned (rounded to T), widened again: exactly what the caller gets.
      returned.resize(rows * n);
      for (int64_t i = 0; i < rows * n; ++i) {
        x_data[first * n + i] = static_cast<T>(x64[i]);
        returned[i] = static_cast<double>(x_data[first * n + i]);
      }
      image.resize(rows * n);
      rounding.resize(rows);
      ForwardChunkWithRounding(returned.data(), rows, image.data(), rounding.data());
      for (int64_t r = 0; r < rows; ++r) {
        double residual_sq = 0.0;
        double cast_sq = 0.0;
        for (int64_t i = 0; i < n; ++i) {
          const double d = image[r * n + i] - y64[r * n + i];
          residual_sq += d * d;
          const double e = returned[r * n + i] - x64[r * n + i];
          cast_sq += e * e;
        }
        const double residual = std::sqrt(residual_sq);
        // Rounding of the residual's own computation (a difference, squares and a sum).
        const double residual_upper = residual * (1.0 + 2.0 * (n + 3) * eps);
        const double composed = bound_data[first + r] + std::sqrt(cast_sq) * (1.0 + 4.0 * eps);
        const double by_residual = inverse_lipschitz * (residual_upper + rounding[r]);
        bound_data[first + r] = std::min(composed, by_residual);
        conv_data[first + r] = bound_data[first + r] <= options.tolerance;
        resid_data[first + r] = residual;
      }
    }
  });
  if (stopped) return absl::CancelledError("inverse: stopped on request");
  return result;
}

template <typename T>
absl::StatusOr<InverseResult> FrozenIResNet::InverseTyped(const at::Tensor& y_in,
                                                          const InverseOptions& options) const {
  at::Tensor y = y_in.contiguous();
  const int64_t batch = y.size(0);
  const int64_t n = dim_;
  InverseResult result = AllocateResult(y);
  const T* y_data = y.data_ptr<T>();
  T* x_data = result.x.data_ptr<T>();
  int64_t* iter_data = result.iterations.data_ptr<int64_t>();
  bool* conv_data = result.converged.data_ptr<bool>();
  double* bound_data = result.error_bound.data_ptr<double>();
  double* resid_data = result.forward_residual.data_ptr<double>();

  const std::vector<double> block_tolerance(num_blocks(), options.tolerance);
  const int64_t chunk = ChunkSize(options, batch);
  const int64_t num_chunks = (batch + chunk - 1) / chunk;
  std::atomic<bool> stopped{false};
  ForEachChunk(num_chunks, [&](int64_t begin, int64_t end) {
    std::vector<T> image;
    for (int64_t c = begin; c < end && !stopped.load(std::memory_order_relaxed); ++c) {
      if (c > begin && StopRequested(options.should_stop)) {
        stopped = true;
        return;
      }
      const int64_t first = c * chunk;
      const int64_t rows = std::min(chunk, batch - first);
      absl::Status status =
          SolveChunk<T>(y_data + first * n, rows, options, block_tolerance,
                        /*bound_rounding=*/false, x_data + first * n, iter_data + first,
                        conv_data + first, bound_data + first);
      if (!status.ok()) {
        stopped = true;
        return;
      }
      image.resize(rows * n);
      ForwardChunk<T>(x_data + first * n, rows, image.data());
      for (int64_t r = 0; r < rows; ++r) {
        double sq = 0.0;
        for (int64_t i = 0; i < n; ++i) {
          double d = double(image[r * n + i]) - double(y_data[(first + r) * n + i]);
          sq += d * d;
        }
        resid_data[first + r] = std::sqrt(sq);
      }
    }
  });
  if (stopped) return absl::CancelledError("inverse: stopped on request");
  return result;
}

absl::StatusOr<at::Tensor> FrozenIResNet::Forward(const at::Tensor& x_in,
                                                  const std::function<bool()>& should_stop) const {
  absl::Status valid = CheckBatch(x_in, dim_, "x");
  if (!valid.ok()) return valid;
  return GuardTorchOr<at::Tensor>("FrozenIResNet::Forward", [&]() -> absl::StatusOr<at::Tensor> {
    at::Tensor x = x_in.contiguous();
    at::Tensor out = at::empty_like(x);
    const int64_t batch = x.size(0);
    const int64_t chunk = ChunkSize(InverseOptions(), batch);
    const int64_t num_chunks = (batch + chunk - 1) / chunk;
    std::atomic<bool> stopped{false};
    ForEachChunk(num_chunks, [&](int64_t begin, int64_t end) {
      for (int64_t c = begin; c < end && !stopped.load(std::memory_order_relaxed); ++c) {
        if (c > begin && StopRequested(should_stop)) {
          stopped = true;
          return;
        }
        const int64_t first = c * chunk;
        const int64_t rows = std::min(chunk, batch - first);
        if (x.scalar_type() == at::kFloat) {
          ForwardChunk<float>(x.data_ptr<float>() + first * dim_, rows,
                              out.data_ptr<float>() + first * dim_);
        } else {
          ForwardChunk<double>(x.data_ptr<double>() + first * dim_, rows,
                               out.data_ptr<double>() + first * dim_);
        }
      }
    });
    if (stopped) return absl::CancelledError("forward: stopped on request");
    return out;
  });
}

absl::StatusOr<InverseResult> FrozenIResNet::Inverse(const at::Tensor& y,
                                                     const InverseOptions& options) const {
  absl::Status valid = ValidateInverseOptions(options);
  if (valid.ok()) valid = CheckBatch(y, dim_, "y");
  if (!valid.ok()) return valid;
  return GuardTorchOr<InverseResult>("FrozenIResNet::Inverse",
                                     [&]() -> absl::StatusOr<InverseResult> {
                                       const bool single = y.scalar_type() == at::kFloat;
                                       if (options.per_block_tolerance) {
                                         return single ? InverseTyped<float>(y, options)
                                                       : InverseTyped<double>(y, options);
                                       }
                                       return single ? CertifiedInverse<float>(y, options)
                                                     : CertifiedInverse<double>(y, options);
                                     });
}

}  // namespace invnet
