#include "kernels/cuda/elementwise.h"

#include "kernels/cuda/cuda_util.cuh"

namespace pdserve::kernels::gpu {
namespace {

using detail::FromFloat;
using detail::ToFloat;

bool KnownDtype(ActDtype d) { return d == ActDtype::kF32 || d == ActDtype::kBF16; }

// One thread block per row.
template <typename InT, typename OutT>
__global__ void RmsNormKernel(const InT* x, const float* weight, int64_t dim, float eps,
                              OutT* out) {
  const InT* row = x + blockIdx.x * dim;
  OutT* out_row = out + blockIdx.x * dim;
  float sum_sq = 0.0f;
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) {
    const float v = ToFloat(row[i]);
    sum_sq += v * v;
  }
  sum_sq = detail::BlockSum(sum_sq);
  const float inv_rms = 1.0f / sqrtf(sum_sq / static_cast<float>(dim) + eps);
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) {
    out_row[i] = FromFloat<OutT>(ToFloat(row[i]) * inv_rms * weight[i]);
  }
}

template <typename InT, typename OutT>
void LaunchRmsNorm(const void* x, const float* weight, int64_t n_rows, int64_t dim, float eps,
                   void* out, cudaStream_t stream) {
  const int threads = dim >= 1024 ? 512 : (dim >= 256 ? 256 : 128);
  PDSERVE_LAUNCH(static_cast<unsigned>(n_rows), threads, 0, stream, RmsNormKernel<InT, OutT>)(
      static_cast<const InT*>(x), weight, dim, eps, static_cast<OutT*>(out));
}

// One thread per rotated pair.
template <typename T>
__global__ void RopeKernel(T* x, int64_t n_rows, int64_t row_stride, int n_heads, int head_dim,
                           int rotary_dim, const int32_t* positions, double log_base) {
  const int pairs_per_head = rotary_dim / 2;
  const int64_t n_pairs = n_rows * n_heads * pairs_per_head;
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < n_pairs;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int i = static_cast<int>(idx % pairs_per_head);
    const int64_t rh = idx / pairs_per_head;
    const int head = static_cast<int>(rh % n_heads);
    const int64_t row = rh / n_heads;
    // f64: at positions in the tens of thousands an f32 angle is off by ~1e-3 rad.
    const double angle = static_cast<double>(positions[row]) *
                         exp(-log_base * (2.0 * i) / static_cast<double>(rotary_dim));
    double s;
    double c;
    sincos(angle, &s, &c);
    T* p = x + row * row_stride + static_cast<int64_t>(head) * head_dim + 2 * i;
    const float v0 = ToFloat(p[0]);
    const float v1 = ToFloat(p[1]);
    const float cf = static_cast<float>(c);
    const float sf = static_cast<float>(s);
    p[0] = FromFloat<T>(v0 * cf - v1 * sf);
    p[1] = FromFloat<T>(v0 * sf + v1 * cf);
  }
}

template <typename T>
__global__ void SwiGluKernel(const T* gate, const T* up, int64_t in_stride, int64_t n_rows,
                             int64_t n_cols, T* out, int64_t out_stride) {
  const int64_t n = n_rows * n_cols;
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < n;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = idx / n_cols;
    const int64_t c = idx - r * n_cols;
    const float g = ToFloat(gate[r * in_stride + c]);
    const float u = ToFloat(up[r * in_stride + c]);
    out[r * out_stride + c] = FromFloat<T>(g / (1.0f + expf(-g)) * u);
  }
}

template <typename XT, typename YT>
__global__ void AddKernel(XT* x, const YT* y, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    x[i] = FromFloat<XT>(ToFloat(x[i]) + ToFloat(y[i]));
  }
}

}  // namespace

cudaError_t RmsNorm(const void* x, ActDtype x_dtype, const float* weight, int64_t n_rows,
                    int64_t dim, float eps, void* out, ActDtype out_dtype, cudaStream_t stream) {
  PDSERVE_GPU_REQUIRE(KnownDtype(x_dtype) && KnownDtype(out_dtype),
                      "rms_norm: dtypes must be f32 or bf16");
  PDSERVE_GPU_REQUIRE(dim > 0, "rms_norm: dim must be > 0");
  PDSERVE_GPU_REQUIRE(n_rows >= 0 && n_rows <= 0x7fffffff, "rms_norm: n_rows out of range");
  if (n_rows == 0) return cudaSuccess;
  PDSERVE_GPU_REQUIRE(x != nullptr && weight != nullptr && out != nullptr,
                      "rms_norm: null pointer");
  PDSERVE_GPU_REQUIRE(x != out || x_dtype == out_dtype,
                      "rms_norm: out may alias x only when the dtypes are equal");
  const bool x_bf16 = x_dtype == ActDtype::kBF16;
  const bool out_bf16 = out_dtype == ActDtype::kBF16;
  if (!x_bf16 && !out_bf16) LaunchRmsNorm<float, float>(x, weight, n_rows, dim, eps, out, stream);
  if (!x_bf16 && out_bf16)
    LaunchRmsNorm<float, __nv_bfloat16>(x, weight, n_rows, dim, eps, out, stream);
  if (x_bf16 && !out_bf16)
    LaunchRmsNorm<__nv_bfloat16, float>(x, weight, n_rows, dim, eps, out, stream);
  if (x_bf16 && out_bf16)
    LaunchRmsNorm<__nv_bfloat16, __nv_bfloat16>(x, weight, n_rows, dim, eps, out, stream);
  return detail::LaunchStatus();
}

cudaError_t RopeInterleaved(void* x, ActDtype dtype, int64_t n_rows, int64_t row_stride,
                            int n_heads, int head_dim, int rotary_dim, const int32_t* positions,
                            float base, cudaStream_t stream) {
  PDSERVE_GPU_REQUIRE(KnownDtype(dtype), "rope: dtype must be f32 or bf16");
  PDSERVE_GPU_REQUIRE(n_heads > 0 && head_dim > 0, "rope: n_heads and head_dim must be > 0");
  PDSERVE_GPU_REQUIRE(rotary_dim > 0 && rotary_dim % 2 == 0 && rotary_dim <= head_dim,
                      "rope: rotary_dim must be even, > 0 and <= head_dim");
  PDSERVE_GPU_REQUIRE(row_stride >= static_cast<int64_t>(n_heads) * head_dim,
                      "rope: row_stride is smaller than n_heads * head_dim");
  PDSERVE_GPU_REQUIRE(base > 0.0f, "rope: base must be > 0");
  PDSERVE_GPU_REQUIRE(n_rows >= 0, "rope: n_rows must be >= 0");
  if (n_rows == 0) return cudaSuccess;
  PDSERVE_GPU_REQUIRE(x != nullptr && positions != nullptr, "rope: null pointer");
  const int64_t n_pairs = n_rows * n_heads * (rotary_dim / 2);
  constexpr int kThreads = 256;
  const unsigned grid = detail::GridFor(n_pairs, kThreads);
  const double log_base = log(static_cast<double>(base));
  if (dtype == ActDtype::kF32) {
    PDSERVE_LAUNCH(grid, kThreads, 0, stream, RopeKernel<float>)(
        static_cast<float*>(x), n_rows, row_stride, n_heads, head_dim, rotary_dim, positions,
        log_base);
  } else {
    PDSERVE_LAUNCH(grid, kThreads, 0, stream, RopeKernel<__nv_bfloat16>)(
        static_cast<__nv_bfloat16*>(x), n_rows, row_stride, n_heads, head_dim, rotary_dim,
        positions, log_base);
  }
  return detail::LaunchStatus();
}

cudaError_t SwiGlu(const void* gate, const void* up, int64_t in_row_stride, int64_t n_rows,
                   int64_t n_cols, void* out, int64_t out_row_stride, ActDtype dtype,
                   cudaStream_t stream) {
  PDSERVE_GPU_REQUIRE(KnownDtype(dtype), "swiglu: dtype must be f32 or bf16");
  PDSERVE_GPU_REQUIRE(n_rows >= 0 && n_cols > 0, "swiglu: n_rows must be >= 0, n_cols > 0");
  PDSERVE_GPU_REQUIRE(in_row_stride >= n_cols && out_row_stride >= n_cols,
                      "swiglu: row strides must be >= n_cols");
  if (n_rows == 0) return cudaSuccess;
  PDSERVE_GPU_REQUIRE(gate != nullptr && up != nullptr && out != nullptr, "swiglu: null pointer");
  constexpr int kThreads = 256;
  const unsigned grid = detail::GridFor(n_rows * n_cols, kThreads);
  if (dtype == ActDtype::kF32) {
    PDSERVE_LAUNCH(grid, kThreads, 0, stream, SwiGluKernel<float>)(
        static_cast<const float*>(gate), static_cast<const float*>(up), in_row_stride, n_rows,
        n_cols, static_cast<float*>(out), out_row_stride);
  } else {
    PDSERVE_LAUNCH(grid, kThreads, 0, stream, SwiGluKernel<__nv_bfloat16>)(
        static_cast<const __nv_bfloat16*>(gate), static_cast<const __nv_bfloat16*>(up),
        in_row_stride, n_rows, n_cols, static_cast<__nv_bfloat16*>(out), out_row_stride);
  }
  return detail::LaunchStatus();
}

cudaError_t AddInPlace(void* x, ActDtype x_dtype, const void* y, ActDtype y_dtype, int64_t n,
                       cudaStream_t stream) {
  PDSERVE_GPU_REQUIRE(KnownDtype(x_dtype) && KnownDtype(y_dtype),
                      "add_in_place: dtypes must be f32 or bf16");
  PDSERVE_GPU_REQUIRE(n >= 0, "add_in_place: n must be >= 0");
  if (n == 0) return cudaSuccess;
  PDSERVE_GPU_REQUIRE(x != nullptr && y != nullptr, "add_in_place: null pointer");
  constexpr int kThreads = 256;
  const unsigned grid = detail::GridFor(n, kThreads);
  const bool xb = x_dtype == ActDtype::kBF16;
  const bool yb = y_dtype == ActDtype::kBF16;
  if (!xb && !yb) {
    PDSERVE_LAUNCH(grid, kThreads, 0, stream, AddKernel<float, float>)(
        static_cast<float*>(x), static_cast<const float*>(y), n);
  }
  if (!xb && yb) {
    PDSERVE_LAUNCH(grid, kThreads, 0, stream, AddKernel<float, __nv_bfloat16>)(
        static_cast<float*>(x), static_cast<const __nv_bfloat16*>(y), n);
  }
  if (xb && !yb) {
    PDSERVE_LAUNCH(grid, kThreads, 0, stream, AddKernel<__nv_bfloat16, float>)(
        static_cast<__nv_bfloat16*>(x), static_cast<const float*>(y), n);
  }
  if (xb && yb) {
    PDSERVE_LAUNCH(grid, kThreads, 0, stream, AddKernel<__nv_bfloat16, __nv_bfloat16>)(
        static_cast<__nv_bfloat16*>(x), static_cast<const __nv_bfloat16*>(y), n);
  }
  return detail::LaunchStatus();
}

}  // namespace pdserve::kernels::gpu
