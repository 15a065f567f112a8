#pragma once
// The decoder's matrix products through cuBLAS: bf16 weights and activations, f32 accumulation.
// Weights are dequantized to bf16 once, at load (kernels/cuda/dequantize.h).

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
// `stream` for the call; one
// handle must not be used by two threads at once. cuBLAS failures come back as
// cudaErrorInvalidValue (invalid value / not supported, LastArgumentError() names it) or
// cudaErrorLaunchFailure (execution failed) or cudaErrorUnknown.
cudaError_t GemmBf16(cublasHandle_t handle, const __nv_bfloat16* x, int64_t n_tokens,
                     const __nv_bfloat16* w, int64_t rows, int64_t cols, void* y,
                     ActDtype y_dtype, cudaStream_t stream);

}  // namespace pdserve::kernels::gpu
