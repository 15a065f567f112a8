#include "kernels/cpu/matmul.h"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "kernels/cpu/isa_kernels.h"

namespace pdserve::kernels {
namespace {

// Cache blocking for n_tokens > 1: a tile of dequantized weight rows (at most kTileFloats f32,
// in L2) is dotted with a tile of x rows (at most kTokenTileFloats), so each weight row is
// dequantized once per call and each x row is reused across the weight tile.
constexpr int64_t kTileFloats = 16 * 1024;
constexpr int64_t kTokenTileFloats = 32 * 1024;

// Per-thread scratch for dequantized rows; grows to the largest tile seen and stays.
float* Scratch(size_t n_floats) {
  thread_local std::vector<float> scratch;
  if (scratch.size() < n_floats) scratch.resize(n_floats);
  return scratch.data();
}

const uint8_t* RowAt(const WeightMatrix& w, int64_t row) {
  return static_cast<const uint8_t*>(w.data) + static_cast<size_t>(row) * w.row_bytes;
}

// y[t][r] for r in [row_begin, row_end), all t.
void MatMulRows(const WeightMatrix& w, const float* x, int64_t n_tokens, float* y,
                int64_t row_begin, int64_t row_end, const internal::IsaKernels& kernels) {
  const int64_t cols = w.cols;
  const bool is_f32 = w.type == TensorType::kF32;
  if (n_tokens == 1 && kernels.fused_rows(w.type, RowAt(w, row_begin), w.row_bytes,
                                          row_end - row_begin, cols, x, y + row_begin)) {
    return;
  }
  const int64_t tile_rows = std::max<int64_t>(1, kTileFloats / cols);
  const int64_t tile_tokens = std::clamp<int64_t>(kTokenTileFloats / cols, 1, n_tokens);
  float* tile = is_f32 ? nullptr : Scratch(static_cast<size_t>(tile_rows * cols));
  const int64_t f32_stride = static_cast<int64_t>(w.row_bytes / sizeof(float));
  for (int64_t r0 = row_begin; r0 < row_end; r0 += tile_rows) {
    const int64_t r1 = std::min(row_end, r0 + tile_rows);
    const float* weights = reinterpret_cast<const float*>(RowAt(w, r0));
    int64_t w_stride = f32_stride;
    if (!is_f32) {
      for (int64_t r = r0; r < r1; ++r) {
        kernels.dequantize(w.type, RowAt(w, r), tile + (r - r0) * cols, cols);
      }
      weights = tile;
      w_stride = cols;
    }
    for (int64_t t0 = 0; t0 < n_tokens; t0 += tile_tokens) {
      const int64_t nt = std::min(tile_tokens, n_tokens - t0);
      kernels.dot_tile(weights, w_stride, r1 - r0, x + t0 * cols, cols, nt, cols,
                       y + t0 * w.rows + r0, w.rows);
    }
  }
}

}  // namespace

void MatMul(const WeightMatrix& w, const float* x, int64_t n_tokens, float* y, ThreadPool& pool,
            Isa isa) {
  if (w.rows <= 0 || n_tokens <= 0) return;
  // Programmer errors (a loader checks shapes against the file before it builds a WeightMatrix):
  // a partial block or short rows would read past the data or compute garbage.
  const TensorTypeInfo& info = GetTensorTypeInfo(w.type);
  if (w.cols <= 0 || w.cols % info.block_elems != 0 || w.row_bytes < RowBytes(info, w.cols)) {
    std::abort();
  }
  const internal::IsaKernels& kernels = internal::KernelsFor(isa);
  pool.ParallelFor(w.rows, [&](int64_t begin, int64_t end) {
    MatMulRows(w, x, n_tokens, y, begin, end, kernels);
  });
}

void DequantizeWeightRow(const WeightMatrix& w, int64_t row, float* out, Isa isa) {
  internal::KernelsFor(isa).dequantize(w.type, RowAt(w, row), out, w.cols);
}

}  // namespace pdserve::kernels
