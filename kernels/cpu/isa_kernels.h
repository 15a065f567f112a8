#pragma once
// Internal to kernels/cpu: the table of one instruction-set variant's building blocks, which the
// public entry points (Dequantize, MatMul) dispatch to. Each variant lives in its own translation
// unit compiled with its own -m flags, so nothing in this header may be an inline function or a
// template that such a unit instantiates (the linker could keep the AVX-512 copy for everyone).

#include <cstdint>

#include "kernels/cpu/isa.h"
#include "kernels/tensor_type.h"

namespace pdserve::kernels::internal {

struct IsaKernels {
  // dst[0, n) = the n elements stored as `type` at src, bit for bit as the `gguf` package's numpy
  // dequantizers compute them (for finite f16 scales). n is a multiple of the type's block_elems.
  void (*dequantize)(TensorType type, const uint8_t* src, float* dst, int64_t n);

  // y[k * y_stride + r] = dot(w + r * w_stride, x + k * x_stride) over n elements, for r in
  // [0, n_w) and k in [0, n_x). `dot` is the variant's one summation order, which depends only
  // on n: an output is the same whatever n_w and n_x (the register blocking) are.
  void (*dot_tile)(const float* w, int64_t w_stride, int64_t n_w, const float* x,
                   int64_t x_stride, int64_t n_x, int64_t n, float* y, int64_t y_stride);

  // For one x row: y[r] = dot(dequantize(w + r * row_bytes), x) for r in [0, n_rows), without
  // a buffer and bitwise equal to that two-step path. Returns false, writing nothing, for a type
  // or size it does not fuse.
  bool (*fused_rows)(TensorType type, const uint8_t* w, size_t row_bytes, int64_t n_rows,
                     int64_t n, const float* x, float* y);
};

const IsaKernels& ScalarKernels();
#if defined(PDSERVE_KERNELS_AVX2)
const IsaKernels& Avx2Kernels();
#endif
#if defined(PDSERVE_KERNELS_AVX512)
const IsaKernels& Avx512Kernels();
#endif

// The table of `isa`; the scalar one for a variant this build lacks.
const IsaKernels& KernelsFor(Isa isa);

}  // namespace pdserve::kernels::internal
