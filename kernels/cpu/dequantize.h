#pragma once
// Dequantization of GGUF tensor data to f32, bit for bit as the reference (ggml and the Python
// `gguf` package) computes it.

#include <cstdint>

#include "kernels/cpu/isa.h"
#include "kernels/tensor_type.h"

namespace pdserve::kernels {

// Converts n elements stored as `type` at src into dst. Precondition: n is a multiple of the
// type's block_elems and src holds n / block_elems whole blocks.
void Dequantize(TensorType type, const void* src, float* dst, int64_t n, Isa isa);

float F16ToF32(uint16_t h);
float Bf16ToF32(uint16_t b);
uint16_t F32ToF16(float f);   // round to nearest even
uint16_t F32ToBf16(float f);  // round to nearest even

}  // namespace pdserve::kernels
