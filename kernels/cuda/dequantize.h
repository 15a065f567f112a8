#pragma once
// GGUF weight data on the device: dequantization (at load time, to the bf16 that the cuBLAS
// GEMMs take, or to f32 for norms) and the token-embedding lookup, which reads the table in its
// stored type. Element values are computed as ggml computes them in f32 (same operations, same
// order, no fused multiply-add), then rounded to nearest even for bf16: bit for bit the CPU
// reference.

#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/cuda/status.h"
#include "kernels/tensor_type.h"

namespace pdserve::kernels::gpu {

// True for the types the kernels below read: F32, F16, BF16, Q4_0, Q4_1, Q8_0, Q4_K, Q6_K.
bool DequantizeSupported(TensorType type);

// dst (n elements, out_dtype) = the n elements stored as `type` at src (device memory, n /
// block_elems whole blocks). Preconditions, checked: n > 0 is a multiple of the type's block
// size; src is 2-byte aligned (4 for F32); dst is aligned for out_dtype.
cudaError_t Dequantize(TensorType type, const void* src, int64_t n, ActDtype out_dtype, void* dst,
                       cudaStream_t stream);

// out (n_tokens, dim) = rows token_ids[t] of the (vocab, dim) table stored as `type`.
// token_ids is device memory; an id outside [0, vocab) gives a row of zeros (the device cannot
// report it: callers validate ids against the vocabulary on the host).
cudaError_t EmbeddingLookup(TensorType type, const void* table, int64_t vocab, int64_t dim,
                            const int32_t* token_ids, int n_tokens, ActDtype out_dtype, void* out,
                            cudaStream_t stream);

}  // namespace pdserve::kernels::gpu
