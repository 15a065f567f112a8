// The AVX-512 variant (F, BW, VL, DQ, with AVX2, FMA and F16C). Compiled with those -m flags;
// reached only when the CPU has them (isa.cc). The same rules as avx2_kernels.cc: no
// standard-library templates or inline functions; dequantization bit for bit the scalar one
// (every scale × quant product is exact in f32, so a fused multiply-add rounds like the
// reference's multiply then add).
//
// Dot order: one 16-lane accumulator, acc = fma(w[16v, 16v + 16), x[16v, 16v + 16), acc) for v in
// order; the last n % 16 elements (plain types only) into one scalar sum in order; the result is
// hsum(acc) + tail, hsum a fixed tree. Several outputs are computed together, each with its own
// accumulator.

#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "kernels/cpu/half_bits.h"
#include "kernels/cpu/isa_kernels.h"

namespace pdserve::kernels::internal {
namespace {

#define PDSERVE_INLINE inline __attribute__((always_inline))

PDSERVE_INLINE float HalfAt(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, sizeof(h));
  return _cvtsh_ss(h);
}

// The f16 at p, broadcast to 16 lanes.
PDSERVE_INLINE __m512 BroadcastHalf(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, sizeof(h));
  return _mm512_cvtph_ps(_mm256_set1_epi16(static_cast<short>(h)));
}

// The f16 pair (d, m) at p, each broadcast to 16 lanes.
PDSERVE_INLINE void BroadcastHalfPair(const uint8_t* p, __m512* d, __m512* m) {
  uint32_t pair;
  std::memcpy(&pair, p, sizeof(pair));
  const __m512 dm = _mm512_cvtph_ps(_mm256_set1_epi32(static_cast<int>(pair)));  // d, m, d, m, ...
  *d = _mm512_permute_ps(dm, 0x00);
  *m = _mm512_permute_ps(dm, 0x55);
}

PDSERVE_INLINE uint32_t U32At(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

// The 16 bytes at p, zero-extended to 32-bit lanes.
PDSERVE_INLINE __m512i Bytes16(const uint8_t* p) {
  return _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

PDSERVE_INLINE __m512 ToFloat(__m512i q) { return _mm512_cvtepi32_ps(q); }

// The 32 nibbles of qs[0, 16): q[0] = the low nibbles (elements 0..15), q[1] = the high ones.
PDSERVE_INLINE void Nibbles32(const uint8_t* qs, __m512i q[2]) {
  const __m512i bytes = Bytes16(qs);
  q[0] = _mm512_and_si512(bytes, _mm512_set1_epi32(0x0F));
  q[1] = _mm512_srli_epi32(bytes, 4);
}

// Adds bit j of qh as bit 4 of element j (q5_0, q5_1).
PDSERVE_INLINE void AddFifthBits(uint32_t qh, __m512i q[2]) {
  const __m512i bit4 = _mm512_set1_epi32(0x10);
  q[0] = _mm512_mask_or_epi32(q[0], static_cast<__mmask16>(qh & 0xffff), q[0], bit4);
  q[1] = _mm512_mask_or_epi32(q[1], static_cast<__mmask16>(qh >> 16), q[1], bit4);
}

PDSERVE_INLINE void DecodeQ4_0(const uint8_t* block, __m512* w) {
  const __m512 d = BroadcastHalf(block);
  __m512i q[2];
  Nibbles32(block + 2, q);
  for (int j = 0; j < 2; ++j) w[j] = _mm512_mul_ps(d, ToFloat(_mm512_sub_epi32(q[j], _mm512_set1_epi32(8))));
}

PDSERVE_INLINE void DecodeQ4_1(const uint8_t* block, __m512* w) {
  __m512 d, m;
  BroadcastHalfPair(block, &d, &m);
  __m512i q[2];
  Nibbles32(block + 4, q);
  for (int j = 0; j < 2; ++j) w[j] = _mm512_fmadd_ps(d, ToFloat(q[j]), m);
}

PDSERVE_INLINE void DecodeQ5_0(const uint8_t* block, __m512* w) {
  const __m512 d = BroadcastHalf(block);
  __m512i q[2];
  Nibbles32(block + 6, q);
  AddFifthBits(U32At(block + 2), q);
  for (int j = 0; j < 2; ++j) w[j] = _mm512_mul_ps(d, ToFloat(_mm512_sub_epi32(q[j], _mm512_set1_epi32(16))));
}

PDSERVE_INLINE void DecodeQ5_1(const uint8_t* block, __m512* w) {
  __m512 d, m;
  BroadcastHalfPair(block, &d, &m);
  __m512i q[2];
  Nibbles32(block + 8, q);
  AddFifthBits(U32At(block + 4), q);
  for (int j = 0; j < 2; ++j) w[j] = _mm512_fmadd_ps(d, ToFloat(q[j]), m);
}

PDSERVE_INLINE void DecodeQ8_0(const uint8_t* block, __m512* w) {
  const __m512 d = BroadcastHalf(block);
  for (int j = 0; j < 2; ++j) {
    const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(block + 2 + 16 * j));
    w[j] = _mm512_mul_ps(ToFloat(_mm512_cvtepi8_epi32(q)), d);
  }
}

// d·sc[s] and -(dmin·m[s]) of the 8 sub-blocks of a q4_K / q5_K block (see avx2_kernels.cc).
PDSERVE_INLINE void KQuantScales(const uint8_t* block, float ds[8], float neg_ms[8]) {
  uint32_t s[3];
  std::memcpy(s, block + 4, sizeof(s));
  const uint32_t sc_lo = s[0] & 0x3f3f3f3fu;
  const uint32_t m_lo = s[1] & 0x3f3f3f3fu;
  const uint32_t sc_hi = (s[2] & 0x0f0f0f0fu) | (((s[0] >> 6) & 0x03030303u) << 4);
  const uint32_t m_hi = ((s[2] >> 4) & 0x0f0f0f0fu) | (((s[1] >> 6) & 0x03030303u) << 4);
  const __m256i sc = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(static_cast<int64_t>(sc_lo | (uint64_t{sc_hi} << 32))));
  const __m256i m = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(static_cast<int64_t>(m_lo | (uint64_t{m_hi} << 32))));
  _mm256_storeu_ps(ds, _mm256_mul_ps(_mm256_set1_ps(HalfAt(block)), _mm256_cvtepi32_ps(sc)));
  _mm256_storeu_ps(neg_ms, _mm256_mul_ps(_mm256_set1_ps(-HalfAt(block + 2)), _mm256_cvtepi32_ps(m)));
}

// Sub-block s (32 elements, vectors 2s and 2s + 1) is the low (s even) or high (s odd) nibbles of
// qs[32 (s / 2), +32); with kFifthBits (q5_K), bit s of qh[i] is the fifth bit of element 32 s + i.
template <bool kFifthBits>
PDSERVE_INLINE void DecodeKQuant(const uint8_t* block, const uint8_t* qh, const uint8_t* qs, __m512* w) {
  const __m512i low4 = _mm512_set1_epi32(0x0F);
  const __m512i bit4 = _mm512_set1_epi32(0x10);
  alignas(32) float ds[8], neg_ms[8];
  KQuantScales(block, ds, neg_ms);
  __m512i high[2];
  if (kFifthBits) {
    high[0] = Bytes16(qh);
    high[1] = Bytes16(qh + 16);
  }
  for (int pair = 0; pair < 4; ++pair) {
    const __m512i bytes[2] = {Bytes16(qs + 32 * pair), Bytes16(qs + 32 * pair + 16)};
    for (int half = 0; half < 2; ++half) {
      const int s = 2 * pair + half;
      const __m512 d = _mm512_set1_ps(ds[s]), m = _mm512_set1_ps(neg_ms[s]);
      for (int j = 0; j < 2; ++j) {
        __m512i q = half ? _mm512_srli_epi32(bytes[j], 4) : _mm512_and_si512(bytes[j], low4);
        if (kFifthBits) {
          const __mmask16 set = _mm512_test_epi32_mask(high[j], _mm512_set1_epi32(1 << s));
          q = _mm512_mask_or_epi32(q, set, q, bit4);
        }
        w[2 * s + j] = _mm512_fmadd_ps(d, ToFloat(q), m);
      }
    }
  }
}

PDSERVE_INLINE void DecodeQ4_K(const uint8_t* block, __m512* w) {
  DecodeKQuant<false>(block, nullptr, block + 16, w);
}

PDSERVE_INLINE void DecodeQ5_K(const uint8_t* block, __m512* w) {
  DecodeKQuant<true>(block, block + 16, block + 48, w);
}

// Element 128 h + 32 k + i of a q6_K block (see scalar_kernels.cc): low bits from
// ql[64h + 32(k % 2) + i] >> 4(k / 2), high bits from qh[32h + i] >> 2k, scale scales[e / 16].
PDSERVE_INLINE void DecodeQ6_K(const uint8_t* block, __m512* w) {
  const __m512i low4 = _mm512_set1_epi32(0x0F);
  const __m512i low2 = _mm512_set1_epi32(0x03);
  const __m512i thirty_two = _mm512_set1_epi32(32);
  alignas(64) float dg[16];
  _mm512_store_ps(dg, _mm512_mul_ps(_mm512_set1_ps(HalfAt(block + 208)),
                                    ToFloat(_mm512_cvtepi8_epi32(_mm_loadu_si128(
                                        reinterpret_cast<const __m128i*>(block + 192))))));
  for (int h = 0; h < 2; ++h) {
    for (int j = 0; j < 2; ++j) {
      const __m512i ql0 = Bytes16(block + 64 * h + 16 * j);       // k = 0 (low), 2 (high)
      const __m512i ql1 = Bytes16(block + 64 * h + 32 + 16 * j);  // k = 1 (low), 3 (high)
      const __m512i qh = Bytes16(block + 128 + 32 * h + 16 * j);
      for (int k = 0; k < 4; ++k) {
        const __m512i ql = k % 2 ? ql1 : ql0;
        const __m512i lo = k / 2 ? _mm512_srli_epi32(ql, 4) : _mm512_and_si512(ql, low4);
        const __m512i hi = _mm512_and_si512(_mm512_srl_epi32(qh, _mm_cvtsi32_si128(2 * k)), low2);
        const __m512i q = _mm512_sub_epi32(_mm512_or_si512(lo, _mm512_slli_epi32(hi, 4)), thirty_two);
        const int c = 4 * h + k;  // the chunk of 32; its elements 16 j .. 16 j + 15 use scale 2c + j
        w[2 * c + j] = _mm512_mul_ps(_mm512_set1_ps(dg[2 * c + j]), ToFloat(q));
      }
    }
  }
}

// 16 halves as floats, bit for bit as HalfToFloat (the conversion instruction quiets signalling
// NaNs, numpy does not).
PDSERVE_INLINE __m512 HalvesToFloats(const uint8_t* p) {
  const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  const __m512 f = _mm512_cvtph_ps(h);
  const __m512i h32 = _mm512_cvtepu16_epi32(h);
  const __mmask16 is_nan = _mm512_cmpgt_epi32_mask(_mm512_and_si512(h32, _mm512_set1_epi32(0x7fff)),
                                                   _mm512_set1_epi32(0x7c00));
  const __m512i nan_bits = _mm512_or_si512(
      _mm512_slli_epi32(_mm512_and_si512(h32, _mm512_set1_epi32(0x8000)), 16),
      _mm512_or_si512(_mm512_set1_epi32(0x7f800000),
                      _mm512_slli_epi32(_mm512_and_si512(h32, _mm512_set1_epi32(0x3ff)), 13)));
  return _mm512_mask_mov_ps(f, is_nan, _mm512_castsi512_ps(nan_bits));
}

PDSERVE_INLINE __m512 Bf16sToFloats(const uint8_t* p) {
  const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(b), 16));
}

PDSERVE_INLINE void DecodeF16(const uint8_t* p, __m512* w) { w[0] = HalvesToFloats(p); }
PDSERVE_INLINE void DecodeBf16(const uint8_t* p, __m512* w) { w[0] = Bf16sToFloats(p); }

float ScalarHalf(const uint8_t* p, bool bf16) {
  uint16_t h;
  std::memcpy(&h, p, sizeof(h));
  return bf16 ? Bf16BitsToFloat(h) : HalfToFloat(h);
}

PDSERVE_INLINE float HorizontalSum(__m512 v) {
  const __m256 v8 = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v8), _mm256_extractf128_ps(v8, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// A block format: kElems elements in kBytes bytes, decoded by kDecode into kElems / 16 vectors.
template <int kElems, int kBytes, void (*kDecode)(const uint8_t*, __m512*)>
struct Format {
  static constexpr int kVectors = kElems / 16;

  static void Dequantize(const uint8_t* src, float* dst, int64_t n) {
    for (int64_t b = 0; b < n / kElems; ++b) {
      __m512 w[kVectors];
      kDecode(src + b * kBytes, w);
      for (int v = 0; v < kVectors; ++v) _mm512_storeu_ps(dst + b * kElems + 16 * v, w[v]);
    }
  }

  // kRows rows at once, their multiply-add chains interleaved (see avx2_kernels.cc).
  template <int kRows>
  static void FusedRows(const uint8_t* w, size_t row_bytes, int64_t n, const float* x, float* y) {
    __m512 acc[kRows];
    for (int r = 0; r < kRows; ++r) acc[r] = _mm512_setzero_ps();
    for (int64_t b = 0; b < n / kElems; ++b) {
      const float* xb = x + b * kElems;
      __m512 wv[kRows][kVectors];
      for (int r = 0; r < kRows; ++r) kDecode(w + r * row_bytes + b * kBytes, wv[r]);
      for (int v = 0; v < kVectors; ++v) {
        const __m512 xv = _mm512_loadu_ps(xb + 16 * v);
#pragma GCC unroll 8
        for (int r = 0; r < kRows; ++r) acc[r] = _mm512_fmadd_ps(wv[r][v], xv, acc[r]);
      }
    }
    for (int r = 0; r < kRows; ++r) y[r] = HorizontalSum(acc[r]);
  }

  static void FusedRows(const uint8_t* w, size_t row_bytes, int64_t n_rows, int64_t n,
                        const float* x, float* y) {
    int64_t r = 0;
    for (; r + 4 <= n_rows; r += 4) FusedRows<4>(w + r * row_bytes, row_bytes, n, x, y + r);
    for (; r < n_rows; ++r) FusedRows<1>(w + r * row_bytes, row_bytes, n, x, y + r);
  }
};

using F16Format = Format<16, 32, DecodeF16>;
using Bf16Format = Format<16, 32, DecodeBf16>;
using Q4_0Format = Format<32, 18, DecodeQ4_0>;
using Q4_1Format = Format<32, 20, DecodeQ4_1>;
using Q5_0Format = Format<32, 22, DecodeQ5_0>;
using Q5_1Format = Format<32, 24, DecodeQ5_1>;
using Q8_0Format = Format<32, 34, DecodeQ8_0>;
using Q4_KFormat = Format<256, 144, DecodeQ4_K>;
using Q5_KFormat = Format<256, 176, DecodeQ5_K>;
using Q6_KFormat = Format<256, 210, DecodeQ6_K>;

void Avx512Dequantize(TensorType type, const uint8_t* src, float* dst, int64_t n) {
  switch (type) {
    case TensorType::kF32:
      std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
      return;
    case TensorType::kF16:
    case TensorType::kBF16: {
      const bool bf16 = type == TensorType::kBF16;
      const int64_t n_vector = n / 16 * 16;
      if (bf16) {
        Bf16Format::Dequantize(src, dst, n_vector);
      } else {
        F16Format::Dequantize(src, dst, n_vector);
      }
      for (int64_t i = n_vector; i < n; ++i) dst[i] = ScalarHalf(src + 2 * i, bf16);
      return;
    }
    case TensorType::kQ4_0: return Q4_0Format::Dequantize(src, dst, n);
    case TensorType::kQ4_1: return Q4_1Format::Dequantize(src, dst, n);
    case TensorType::kQ5_0: return Q5_0Format::Dequantize(src, dst, n);
    case TensorType::kQ5_1: return Q5_1Format::Dequantize(src, dst, n);
    case TensorType::kQ8_0: return Q8_0Format::Dequantize(src, dst, n);
    case TensorType::kQ4_K: return Q4_KFormat::Dequantize(src, dst, n);
    case TensorType::kQ5_K: return Q5_KFormat::Dequantize(src, dst, n);
    case TensorType::kQ6_K: return Q6_KFormat::Dequantize(src, dst, n);
  }
}

bool Avx512FusedRows(TensorType type, const uint8_t* w, size_t row_bytes, int64_t n_rows, int64_t n,
                     const float* x, float* y) {
  switch (type) {
    case TensorType::kF32:
      return false;  // nothing to decode: dot_tile reads the rows directly
    case TensorType::kF16:
      if (n % 16 != 0) return false;
      F16Format::FusedRows(w, row_bytes, n_rows, n, x, y);
      return true;
    case TensorType::kBF16:
      if (n % 16 != 0) return false;
      Bf16Format::FusedRows(w, row_bytes, n_rows, n, x, y);
      return true;
    case TensorType::kQ4_0: Q4_0Format::FusedRows(w, row_bytes, n_rows, n, x, y); return true;
    case TensorType::kQ4_1: Q4_1Format::FusedRows(w, row_bytes, n_rows, n, x, y); return true;
    case TensorType::kQ5_0: Q5_0Format::FusedRows(w, row_bytes, n_rows, n, x, y); return true;
    case TensorType::kQ5_1: Q5_1Format::FusedRows(w, row_bytes, n_rows, n, x, y); return true;
    case TensorType::kQ8_0: Q8_0Format::FusedRows(w, row_bytes, n_rows, n, x, y); return true;
    case TensorType::kQ4_K: Q4_KFormat::FusedRows(w, row_bytes, n_rows, n, x, y); return true;
    case TensorType::kQ5_K: Q5_KFormat::FusedRows(w, row_bytes, n_rows, n, x, y); return true;
    case TensorType::kQ6_K: Q6_KFormat::FusedRows(w, row_bytes, n_rows, n, x, y); return true;
  }
  return false;
}

// kRows × kTokens outputs, each with the one dot order, sharing every load of w and of x.
template <int kRows, int kTokens>
void DotBlock(const float* w, int64_t w_stride, const float* x, int64_t x_stride, int64_t n,
              float* y, int64_t y_stride) {
  __m512 acc[kRows][kTokens];
  for (int r = 0; r < kRows; ++r) {
    for (int t = 0; t < kTokens; ++t) acc[r][t] = _mm512_setzero_ps();
  }
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m512 wv[kRows];
    for (int r = 0; r < kRows; ++r) wv[r] = _mm512_loadu_ps(w + r * w_stride + i);
    for (int t = 0; t < kTokens; ++t) {
      const __m512 xv = _mm512_loadu_ps(x + t * x_stride + i);
      for (int r = 0; r < kRows; ++r) acc[r][t] = _mm512_fmadd_ps(wv[r], xv, acc[r][t]);
    }
  }
  for (int r = 0; r < kRows; ++r) {
    for (int t = 0; t < kTokens; ++t) {
      float tail = 0.0f;
      for (int64_t j = i; j < n; ++j) tail += w[r * w_stride + j] * x[t * x_stride + j];
      y[t * y_stride + r] = HorizontalSum(acc[r][t]) + tail;
    }
  }
}

using DotBlockFn = void (*)(const float*, int64_t, const float*, int64_t, int64_t, float*, int64_t);
constexpr int kBlockRows = 4;
constexpr int kBlockTokens = 4;
constexpr DotBlockFn kDotBlocks[kBlockRows][kBlockTokens] = {
    {DotBlock<1, 1>, DotBlock<1, 2>, DotBlock<1, 3>, DotBlock<1, 4>},
    {DotBlock<2, 1>, DotBlock<2, 2>, DotBlock<2, 3>, DotBlock<2, 4>},
    {DotBlock<3, 1>, DotBlock<3, 2>, DotBlock<3, 3>, DotBlock<3, 4>},
    {DotBlock<4, 1>, DotBlock<4, 2>, DotBlock<4, 3>, DotBlock<4, 4>},
};

void Avx512DotTile(const float* w, int64_t w_stride, int64_t n_w, const float* x, int64_t x_stride,
                   int64_t n_x, int64_t n, float* y, int64_t y_stride) {
  for (int64_t k = 0; k < n_x; k += kBlockTokens) {
    const int64_t n_tokens = n_x - k < kBlockTokens ? n_x - k : kBlockTokens;
    for (int64_t r = 0; r < n_w; r += kBlockRows) {
      const int64_t n_rows = n_w - r < kBlockRows ? n_w - r : kBlockRows;
      kDotBlocks[n_rows - 1][n_tokens - 1](w + r * w_stride, w_stride, x + k * x_stride, x_stride, n,
                                           y + k * y_stride + r, y_stride);
    }
  }
}

}  // namespace

const IsaKernels& Avx512Kernels() {
  static constexpr IsaKernels kKernels = {Avx512Dequantize, Avx512DotTile, Avx512FusedRows};
  return kKernels;
}

}  // namespace pdserve::kernels::internal
