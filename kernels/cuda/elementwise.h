#pragma once
// Row-wise and element-wise operations of a LLaMA decoder on device activations, with the math
// of kernels/cpu/ops.h. Activations are f32 or bf16 (ActDtype); arithmetic is f32 throughout
// (RoPE angles in f64), and bf16 results are rounded to nearest even once, at the store.

#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/cuda/status.h"

namespace pdserve::kernels::gpu {

// out (n_rows, dim) = x / sqrt(mean(x²) + eps) * weight, row by row. x and out are contiguous
// rows; weight is (dim) f32 on the device. out may alias x when the dtypes are equal.
cudaError_t RmsNorm(const void* x, ActDtype x_dtype, const float* weight, int64_t n_rows,
                    int64_t dim, float eps, void* out, ActDtype out_dtype, cudaStream_t stream);

// Rotates, in place, the interleaved pairs (v[2i], v[2i+1]) of heads [0, n_heads) of each row by
// the angle positions[row] * base^(-2i / rotary_dim), for 2i < rotary_dim (the GGUF `llama`
// convention). Row r starts at x + r * row_stride elements; its heads are contiguous, head_dim
// each (q and k of a fused QKV row can be rotated in one call: n_heads = n_q_heads + n_kv_heads).
// positions is (n_rows) int32 on the device. rotary_dim is even and <= head_dim.
cudaError_t RopeInterleaved(void* x, ActDtype dtype, int64_t n_rows, int64_t row_stride,
                            int n_heads, int head_dim, int rotary_dim, const int32_t* positions,
                            float base, cudaStream_t stream);

// out[r][i] = silu(gate[r][i]) * up[r][i] for i in [0, n_cols), rows strided by *_row_stride
// elements (a fused gate|up GEMM output is gate = gu, up = gu + hidden, stride 2 * hidden).
// All three in `dtype`; out may alias gate or up.
cudaError_t SwiGlu(const void* gate, const void* up, int64_t in_row_stride, int64_t n_rows,
                   int64_t n_cols, void* out, int64_t out_row_stride, ActDtype dtype,
                   cudaStream_t stream);

// x[i] += y[i] for i in [0, n) (the residual connection).
cudaError_t AddInPlace(void* x, ActDtype x_dtype, const void* y, ActDtype y_dtype, int64_t n,
                       cudaStream_t stream);

}  // namespace pdserve::kernels::gpu
