// The scalar variant: the reference the SIMD variants are tested against. Every formula and its
// order of operations follow gguf/quants.py (the `gguf` package) so that dequantization is bit
// for bit the same; the unit is compiled with -ffp-contract=off so that no multiply and add fuse.

#include <bit>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "kernels/cpu/half_bits.h"
#include "kernels/cpu/isa_kernels.h"

namespace pdserve::kernels::internal {
namespace {

static_assert(std::endian::native == std::endian::little, "GGUF data is little-endian");

uint16_t LoadU16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

uint32_t LoadU32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

float LoadHalf(const uint8_t* p) { return HalfToFloat(LoadU16(p)); }

// Block layouts (bytes): q4_0 {d:f16, qs[16]}, q4_1 {d, m, qs[16]}, q5_0 {d, qh:u32, qs[16]},
// q5_1 {d, m, qh, qs[16]}, q8_0 {d, qs:i8[32]}. Element j < 16 is the low nibble of qs[j],
// element j + 16 its high nibble; bit j of qh is element j's fifth bit.

void DequantizeQ4_0(const uint8_t* b, float* y) {
  const float d = LoadHalf(b);
  for (int j = 0; j < 16; ++j) {
    y[j] = d * static_cast<float>((b[2 + j] & 0x0F) - 8);
    y[j + 16] = d * static_cast<float>((b[2 + j] >> 4) - 8);
  }
}

void DequantizeQ4_1(const uint8_t* b, float* y) {
  const float d = LoadHalf(b);
  const float m = LoadHalf(b + 2);
  for (int j = 0; j < 16; ++j) {
    y[j] = d * static_cast<float>(b[4 + j] & 0x0F) + m;
    y[j + 16] = d * static_cast<float>(b[4 + j] >> 4) + m;
  }
}

void DequantizeQ5_0(const uint8_t* b, float* y) {
  const float d = LoadHalf(b);
  const uint32_t qh = LoadU32(b + 2);
  for (int j = 0; j < 16; ++j) {
    const int lo = (b[6 + j] & 0x0F) | static_cast<int>(((qh >> j) & 1u) << 4);
    const int hi = (b[6 + j] >> 4) | static_cast<int>(((qh >> (j + 16)) & 1u) << 4);
    y[j] = d * static_cast<float>(lo - 16);
    y[j + 16] = d * static_cast<float>(hi - 16);
  }
}

void DequantizeQ5_1(const uint8_t* b, float* y) {
  const float d = LoadHalf(b);
  const float m = LoadHalf(b + 2);
  const uint32_t qh = LoadU32(b + 4);
  for (int j = 0; j < 16; ++j) {
    const int lo = (b[8 + j] & 0x0F) | static_cast<int>(((qh >> j) & 1u) << 4);
    const int hi = (b[8 + j] >> 4) | static_cast<int>(((qh >> (j + 16)) & 1u) << 4);
    y[j] = d * static_cast<float>(lo) + m;
    y[j + 16] = d * static_cast<float>(hi) + m;
  }
}

void DequantizeQ8_0(const uint8_t* b, float* y) {
  const float d = LoadHalf(b);
  for (int j = 0; j < 32; ++j) y[j] = static_cast<float>(static_cast<int8_t>(b[2 + j])) * d;
}

// The 6-bit scale and min of sub-block s (of 8) packed in the 12 bytes of q4_K and q5_K.
void KQuantScaleMin(const uint8_t* scales, int s, int* scale, int* min) {
  if (s < 4) {
    *scale = scales[s] & 0x3F;
    *min = scales[s + 4] & 0x3F;
  } else {
    *scale = (scales[s + 4] & 0x0F) | ((scales[s - 4] >> 2) & 0x30);
    *min = (scales[s + 4] >> 4) | ((scales[s] >> 2) & 0x30);
  }
}

// q4_K {d:f16, dmin:f16, scales[12], qs[128]}: sub-block s (32 elements) is the low (s even) or
// high (s odd) nibbles of qs[32 * (s / 2), +32).
void DequantizeQ4_K(const uint8_t* b, float* y) {
  const float d = LoadHalf(b);
  const float dmin = LoadHalf(b + 2);
  const uint8_t* qs = b + 16;
  for (int s = 0; s < 8; ++s) {
    int sc, m;
    KQuantScaleMin(b + 4, s, &sc, &m);
    const float ds = d * static_cast<float>(sc);
    const float ms = dmin * static_cast<float>(m);
    const int shift = (s & 1) * 4;
    for (int i = 0; i < 32; ++i) {
      const int q = (qs[32 * (s / 2) + i] >> shift) & 0x0F;
      y[32 * s + i] = ds * static_cast<float>(q) - ms;
    }
  }
}

// q5_K {d, dmin, scales[12], qh[32], qs[128]}: as q4_K, plus bit s of qh[i] as the fifth bit of
// element 32 * s + i.
void DequantizeQ5_K(const uint8_t* b, float* y) {
  const float d = LoadHalf(b);
  const float dmin = LoadHalf(b + 2);
  const uint8_t* qh = b + 16;
  const uint8_t* qs = b + 48;
  for (int s = 0; s < 8; ++s) {
    int sc, m;
    KQuantScaleMin(b + 4, s, &sc, &m);
    const float ds = d * static_cast<float>(sc);
    const float ms = dmin * static_cast<float>(m);
    const int shift = (s & 1) * 4;
    for (int i = 0; i < 32; ++i) {
      const int q = ((qs[32 * (s / 2) + i] >> shift) & 0x0F) | (((qh[i] >> s) & 1) << 4);
      y[32 * s + i] = ds * static_cast<float>(q) - ms;
    }
  }
}

// q6_K {ql[128], qh[64], scales:i8[16], d:f16}. Element e = 128 * h + 32 * k + i (h < 2, k < 4,
// i < 32): low 4 bits from ql[64 * h + 32 * (k % 2) + i] >> (4 * (k / 2)), high 2 bits from
// qh[32 * h + i] >> (2 * k); scale scales[e / 16].
void DequantizeQ6_K(const uint8_t* b, float* y) {
  const uint8_t* ql = b;
  const uint8_t* qh = b + 128;
  const int8_t* scales = reinterpret_cast<const int8_t*>(b + 192);
  const float d = LoadHalf(b + 208);
  for (int e = 0; e < 256; ++e) {
    const int h = e / 128, k = (e % 128) / 32, i = e % 32;
    const int lo = (ql[64 * h + 32 * (k % 2) + i] >> (4 * (k / 2))) & 0x0F;
    const int hi = (qh[32 * h + i] >> (2 * k)) & 0x03;
    const float dg = d * static_cast<float>(scales[e / 16]);
    y[e] = dg * static_cast<float>((lo | (hi << 4)) - 32);
  }
}

template <void (*kBlock)(const uint8_t*, float*)>
void DequantizeBlocks(const uint8_t* src, float* dst, int64_t n, int64_t block_elems,
                      int64_t block_bytes) {
  for (int64_t i = 0; i < n / block_elems; ++i) kBlock(src + i * block_bytes, dst + i * block_elems);
}

void ScalarDequantize(TensorType type, const uint8_t* src, float* dst, int64_t n) {
  const TensorTypeInfo& info = GetTensorTypeInfo(type);
  switch (type) {
    case TensorType::kF32:
      std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
      return;
    case TensorType::kF16:
      for (int64_t i = 0; i < n; ++i) dst[i] = LoadHalf(src + 2 * i);
      return;
    case TensorType::kBF16:
      for (int64_t i = 0; i < n; ++i) dst[i] = Bf16BitsToFloat(LoadU16(src + 2 * i));
      return;
    case TensorType::kQ4_0:
      return DequantizeBlocks<DequantizeQ4_0>(src, dst, n, info.block_elems, info.block_bytes);
    case TensorType::kQ4_1:
      return DequantizeBlocks<DequantizeQ4_1>(src, dst, n, info.block_elems, info.block_bytes);
    case TensorType::kQ5_0:
      return DequantizeBlocks<DequantizeQ5_0>(src, dst, n, info.block_elems, info.block_bytes);
    case TensorType::kQ5_1:
      return DequantizeBlocks<DequantizeQ5_1>(src, dst, n, info.block_elems, info.block_bytes);
    case TensorType::kQ8_0:
      return DequantizeBlocks<DequantizeQ8_0>(src, dst, n, info.block_elems, info.block_bytes);
    case TensorType::kQ4_K:
      return DequantizeBlocks<DequantizeQ4_K>(src, dst, n, info.block_elems, info.block_bytes);
    case TensorType::kQ5_K:
      return DequantizeBlocks<DequantizeQ5_K>(src, dst, n, info.block_elems, info.block_bytes);
    case TensorType::kQ6_K:
      return DequantizeBlocks<DequantizeQ6_K>(src, dst, n, info.block_elems, info.block_bytes);
  }
  std::abort();  // programmer error: TensorType holds only the enumerators above
}

// Eight running sums, element i into sums[i % 8], added pairwise at the end.
float ScalarDot(const float* w, const float* x, int64_t n) {
  float sums[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int j = 0; j < 8; ++j) sums[j] += w[i + j] * x[i + j];
  }
  for (int j = 0; i < n; ++i, ++j) sums[j] += w[i] * x[i];
  return ((sums[0] + sums[1]) + (sums[2] + sums[3])) + ((sums[4] + sums[5]) + (sums[6] + sums[7]));
}

void ScalarDotTile(const float* w, int64_t w_stride, int64_t n_w, const float* x,
                   int64_t x_stride, int64_t n_x, int64_t n, float* y, int64_t y_stride) {
  for (int64_t k = 0; k < n_x; ++k) {
    for (int64_t r = 0; r < n_w; ++r) y[k * y_stride + r] = ScalarDot(w + r * w_stride, x + k * x_stride, n);
  }
}

bool ScalarFusedRows(TensorType, const uint8_t*, size_t, int64_t, int64_t, const float*, float*) {
  return false;
}

}  // namespace

const IsaKernels& ScalarKernels() {
  static constexpr IsaKernels kKernels = {ScalarDequantize, ScalarDotTile, ScalarFusedRows};
  return kKernels;
}

}  // namespace pdserve::kernels::internal
