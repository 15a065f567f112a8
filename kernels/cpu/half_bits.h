#pragma once
// Internal to kernels/cpu: f16 and bf16 conversions on bit patterns, exact and branch-light, for
// the hot loops (dequantization, the KV cache). The public, out-of-line versions are in
// dequantize.h. These functions are `static` on purpose: units compiled with different -m flags
// include this header, and internal linkage keeps the linker from sharing one ISA's copy.

#include <cstdint>
#include <cstring>

namespace pdserve::kernels::internal {

static inline float BitsToF32(uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}

static inline uint32_t F32ToBits(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof(bits));
  return bits;
}

// Exact; a NaN keeps its payload (shifted), as numpy's float16 -> float32 cast does.
static inline float HalfToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exponent = (h >> 10) & 0x1fu;
  uint32_t mantissa = h & 0x3ffu;
  if (exponent == 0x1f) return BitsToF32(sign | 0x7f800000u | (mantissa << 13));
  if (exponent != 0) return BitsToF32(sign | ((exponent + 112) << 23) | (mantissa << 13));
  if (mantissa == 0) return BitsToF32(sign);
  // Subnormal: mantissa · 2^-24; normalise so that bit 10 is the implicit one.
  uint32_t shift = 0;
  while ((mantissa & 0x400u) == 0) {
    mantissa <<= 1;
    ++shift;
  }
  return BitsToF32(sign | ((113 - shift) << 23) | ((mantissa & 0x3ffu) << 13));
}

// Round to nearest even; overflow gives ±inf, a NaN stays a (quiet) NaN.
static inline uint16_t FloatToHalf(float f) {
  const uint32_t bits = F32ToBits(f);
  const uint32_t sign = (bits >> 16) & 0x8000u;
  const uint32_t magnitude = bits & 0x7fffffffu;
  if (magnitude >= 0x7f800000u) {  // inf or NaN
    if (magnitude == 0x7f800000u) return static_cast<uint16_t>(sign | 0x7c00u);
    return static_cast<uint16_t>(sign | 0x7e00u | ((magnitude >> 13) & 0x3ffu));
  }
  if (magnitude >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // >= 65520
  if (magnitude >= 0x38800000u) {  // a normal half: >= 2^-14
    uint32_t h = (((magnitude >> 23) - 112) << 10) | ((magnitude >> 13) & 0x3ffu);
    const uint32_t rest = magnitude & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ++h;  // a carry may bump the exponent
    return static_cast<uint16_t>(sign | h);
  }
  if (magnitude <= 0x33000000u) return static_cast<uint16_t>(sign);  // <= 2^-25 rounds to zero
  // A subnormal half: value / 2^-24 = mantissa >> (126 - exponent), rounded.
  const uint32_t exponent = magnitude >> 23;
  const uint32_t mantissa = (magnitude & 0x7fffffu) | 0x800000u;
  const uint32_t shift = 126 - exponent;
  uint32_t h = mantissa >> shift;
  const uint32_t rest = mantissa & ((1u << shift) - 1);
  const uint32_t half = 1u << (shift - 1);
  if (rest > half || (rest == half && (h & 1u))) ++h;
  return static_cast<uint16_t>(sign | h);
}

static inline float Bf16BitsToFloat(uint16_t b) { return BitsToF32(static_cast<uint32_t>(b) << 16); }

// Round to nearest even; a NaN becomes a quiet NaN (as ggml and the gguf package do).
static inline uint16_t FloatToBf16(float f) {
  uint32_t bits = F32ToBits(f);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40u);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>(bits >> 16);
}

}  // namespace pdserve::kernels::internal
