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

  // out[k * out_stride] = Σ_i w[i] · x[k * x_stride + i] over i in [0, n), for k in [0, n_x).
  // The accumulation order of each output depends only on n (the variant's one dot order), so
  // the result for one x row is the same whatever n_x.
  void (*dot_many)(const float* w, int64_t n, const float* x, int64_t x_stride, int64_t n_x,
                   float* out, int64_t out_stride);

  // Writes dot_many(dequantize(row), n, x, ...) for one x row into *out without a buffer, bitwise
  // equal to that two-step path; returns false (writing nothing) for types it does not fuse.
  bool (*fused_dot)(TensorType type, const uint8_t* row, int64_t n, const float* x, float* out);
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
