#include "kernels/cpu/dequantize.h"

#include "kernels/cpu/half_bits.h"
#include "kernels/cpu/isa_kernels.h"

namespace pdserve::kernels {

void Dequantize(TensorType type, const void* src, float* dst, int64_t n, Isa isa) {
  internal::KernelsFor(isa).dequantize(type, static_cast<const uint8_t*>(src), dst, n);
}

float F16ToF32(uint16_t h) { return internal::HalfToFloat(h); }
float Bf16ToF32(uint16_t b) { return internal::Bf16BitsToFloat(b); }
uint16_t F32ToF16(float f) { return internal::FloatToHalf(f); }
uint16_t F32ToBf16(float f) { return internal::FloatToBf16(f); }

}  // namespace pdserve::kernels
