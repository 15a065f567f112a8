#pragma once
// The decoder's matrix products through cuBLAS: bf16 weights and activations with f32
// accumulation (the fast path), or f32 throughout (the exact path, no TF32). Weights are
// dequantized to bf16 or f32 once, at load (kernels/cuda/dequantize.h).

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/cuda/status.h"

namespace pdserve::kernels::gpu {

// y (n_tokens, rows) = x (n_tokens, cols) · wᵀ, with w row-major (rows, cols) as GGUF stores a
// weight (out_features, in_features), x and y row-major and contiguous. y is bf16 (rounded once
// from the f32 accumulator) or f32 (logits); split-K partial sums are kept in f32 (the call sets
// the handle's math mode to disallow reduced-precision reductions). The handle is bound to
// `stream` (only if it is bound to another: a workspace set for that stream stays); one handle
// must not be used by two threads at once. cuBLAS failures come back as
// cudaErrorInvalidValue (invalid value / not supported, LastArgumentError() names it) or
// cudaErrorLaunchFailure (execution failed) or cudaErrorUnknown.
cudaError_t GemmBf16(cublasHandle_t handle, const __nv_bfloat16* x, int64_t n_tokens,
                     const __nv_bfloat16* w, int64_t rows, int64_t cols, void* y,
                     ActDtype y_dtype, cudaStream_t stream);

// The same product with x, w and y all f32: f32 multiply-adds on the CUDA cores (the math mode
// the call sets rules out TF32 tensor cores), for an f32 forward pass. Errors as GemmBf16's.
cudaError_t GemmF32(cublasHandle_t handle, const float* x, int64_t n_tokens, const float* w,
                    int64_t rows, int64_t cols, float* y, cudaStream_t stream);

}  // namespace pdserve::kernels::gpu
