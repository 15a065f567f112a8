#pragma once
// Products of a weight matrix (f32, f16, bf16 or a GGUF quantized type, kept as stored) with f32
// activations. The same entry point serves decode (n_tokens = batch size, one row of x per
// sequence) and prefill (n_tokens = prompt length): the weights are read once per call.
//
// Determinism contract: y[t][r] is computed by one thread with an arithmetic order that depends
// only on (isa, w's row r, x's row t): not on n_tokens, the thread count or the other rows of x.

#include <cstddef>
#include <cstdint>

#include "kernels/cpu/isa.h"
#include "kernels/cpu/thread_pool.h"
#include "kernels/tensor_type.h"

namespace pdserve::kernels {

// A row-major (rows, cols) matrix in its stored type; a view: the caller owns `data`.
struct WeightMatrix {
  TensorType type = TensorType::kF32;
  const void* data = nullptr;
  int64_t rows = 0;
  int64_t cols = 0;  // a multiple of the type's block_elems
  size_t row_bytes = 0;
};

// y (n_tokens, w.rows) = x (n_tokens, w.cols) · wᵀ. x and y are row-major f32 and do not alias.
void MatMul(const WeightMatrix& w, const float* x, int64_t n_tokens, float* y, ThreadPool& pool,
            Isa isa);

// Dequantizes row `row` of w into out (w.cols floats).
void DequantizeWeightRow(const WeightMatrix& w, int64_t row, float* out, Isa isa);

}  // namespace pdserve::kernels
