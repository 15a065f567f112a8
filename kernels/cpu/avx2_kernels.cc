// The AVX2 + FMA + F16C variant. Compiled with -mavx2 -mfma -mf16c; reached only when the CPU
// has them (isa.cc). Uses no standard-library templates or inline functions, whose out-of-line
// copies would carry these instructions into code shared with the other variants.
//
// Dequantization is bit for bit the scalar one: every product of an f16 scale, a small integer
// scale and a quant is exact in f32, so a fused multiply-add rounds once where the reference's
// separate multiply and add also round once (only at the add).
//
// Dot order: one 8-lane accumulator, acc = fma(w[8v, 8v + 8), x[8v, 8v + 8), acc) for v in order;
// the last n % 8 elements (plain types only) into one scalar sum in order; the result is
// hsum(acc) + tail, hsum a fixed tree. Several outputs (rows × tokens) are computed together for
// register reuse, each with its own accumulator, so none depends on its neighbours.

#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "kernels/cpu/half_bits.h"
#include "kernels/cpu/isa_kernels.h"

namespace pdserve::kernels::internal {
namespace {

// Decoders run inside the hot loops: they must inline (GCC otherwise calls them and passes the
// vectors through memory).
#define PDSERVE_INLINE inline __attribute__((always_inline))

PDSERVE_INLINE float HalfAt(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, sizeof(h));
  return _cvtsh_ss(h);
}

// The f16 at p, broadcast to 8 lanes (one conversion, no scalar round trip).
PDSERVE_INLINE __m256 BroadcastHalf(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, sizeof(h));
  return _mm256_cvtph_ps(_mm_set1_epi16(static_cast<short>(h)));
}

// The f16 pair (d, m) at p, each broadcast to 8 lanes.
PDSERVE_INLINE void BroadcastHalfPair(const uint8_t* p, __m256* d, __m256* m) {
  uint32_t pair;
  std::memcpy(&pair, p, sizeof(pair));
  const __m256 dm = _mm256_cvtph_ps(_mm_set1_epi32(static_cast<int>(pair)));  // d, m, d, m, ...
  *d = _mm256_permute_ps(dm, 0x00);
  *m = _mm256_permute_ps(dm, 0x55);
}

PDSERVE_INLINE uint32_t U32At(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

// The 8 bytes at p, zero-extended to 32-bit lanes.
PDSERVE_INLINE __m256i Bytes8(const uint8_t* p) {
  return _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
}

// The 32 nibbles of qs[0, 16) in element order (low nibbles of bytes 0..15, then high ones), as
// 32-bit lanes: w[0] = low of bytes 0..7, w[1] = low of 8..15, w[2] = high of 0..7, w[3] = high
// of 8..15.
PDSERVE_INLINE void Nibbles32(const uint8_t* qs, __m256i q[4]) {
  const __m256i low4 = _mm256_set1_epi32(0x0F);
  const __m256i b0 = Bytes8(qs), b1 = Bytes8(qs + 8);
  q[0] = _mm256_and_si256(b0, low4);
  q[1] = _mm256_and_si256(b1, low4);
  q[2] = _mm256_srli_epi32(b0, 4);
  q[3] = _mm256_srli_epi32(b1, 4);
}

// Adds bit j of qh as bit 4 of element j (q5_0, q5_1).
PDSERVE_INLINE void AddFifthBits(uint32_t qh, __m256i q[4]) {
  const __m256i bits = _mm256_set1_epi32(static_cast<int>(qh));
  const __m256i bit4 = _mm256_set1_epi32(0x10);
  // Shift bit j to bit 4: left by 4 - j for j < 4, right by j - 4 after.
  const __m256i v0 = _mm256_srlv_epi32(_mm256_slli_epi32(bits, 4), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  const __m256i v1 = _mm256_srlv_epi32(bits, _mm256_setr_epi32(4, 5, 6, 7, 8, 9, 10, 11));
  const __m256i v2 = _mm256_srlv_epi32(bits, _mm256_setr_epi32(12, 13, 14, 15, 16, 17, 18, 19));
  const __m256i v3 = _mm256_srlv_epi32(bits, _mm256_setr_epi32(20, 21, 22, 23, 24, 25, 26, 27));
  q[0] = _mm256_or_si256(q[0], _mm256_and_si256(v0, bit4));
  q[1] = _mm256_or_si256(q[1], _mm256_and_si256(v1, bit4));
  q[2] = _mm256_or_si256(q[2], _mm256_and_si256(v2, bit4));
  q[3] = _mm256_or_si256(q[3], _mm256_and_si256(v3, bit4));
}

PDSERVE_INLINE __m256 ToFloat(__m256i q) { return _mm256_cvtepi32_ps(q); }

// Block decoders: the values of one block, as vectors of 8 in element order.

PDSERVE_INLINE void DecodeQ4_0(const uint8_t* block, __m256* w) {
  const __m256 d = BroadcastHalf(block);
  const __m256i eight = _mm256_set1_epi32(8);
  __m256i q[4];
  Nibbles32(block + 2, q);
  for (int j = 0; j < 4; ++j) w[j] = _mm256_mul_ps(d, ToFloat(_mm256_sub_epi32(q[j], eight)));
}

PDSERVE_INLINE void DecodeQ4_1(const uint8_t* block, __m256* w) {
  __m256 d, m;
  BroadcastHalfPair(block, &d, &m);
  __m256i q[4];
  Nibbles32(block + 4, q);
  for (int j = 0; j < 4; ++j) w[j] = _mm256_fmadd_ps(d, ToFloat(q[j]), m);
}

PDSERVE_INLINE void DecodeQ5_0(const uint8_t* block, __m256* w) {
  const __m256 d = BroadcastHalf(block);
  const __m256i sixteen = _mm256_set1_epi32(16);
  __m256i q[4];
  Nibbles32(block + 6, q);
  AddFifthBits(U32At(block + 2), q);
  for (int j = 0; j < 4; ++j) w[j] = _mm256_mul_ps(d, ToFloat(_mm256_sub_epi32(q[j], sixteen)));
}

PDSERVE_INLINE void DecodeQ5_1(const uint8_t* block, __m256* w) {
  __m256 d, m;
  BroadcastHalfPair(block, &d, &m);
  __m256i q[4];
  Nibbles32(block + 8, q);
  AddFifthBits(U32At(block + 4), q);
  for (int j = 0; j < 4; ++j) w[j] = _mm256_fmadd_ps(d, ToFloat(q[j]), m);
}

PDSERVE_INLINE void DecodeQ8_0(const uint8_t* block, __m256* w) {
  const __m256 d = BroadcastHalf(block);
  for (int j = 0; j < 4; ++j) {
    const __m128i q = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(block + 2 + 8 * j));
    w[j] = _mm256_mul_ps(ToFloat(_mm256_cvtepi8_epi32(q)), d);
  }
}

// The scale d·sc[s] and the negated offset -(dmin·m[s]) of the 8 sub-blocks of a q4_K / q5_K
// block. The 12 scale bytes hold, for j < 4: sc[j] = s[j] & 63, m[j] = s[j + 4] & 63,
// sc[j + 4] = (s[j + 8] & 15) | (s[j] >> 6) << 4, m[j + 4] = (s[j + 8] >> 4) | (s[j + 4] >> 6) << 4;
// unpacked here four bytes at a time.
PDSERVE_INLINE void KQuantScales(const uint8_t* block, float ds[8], float neg_ms[8]) {
  uint32_t s[3];
  std::memcpy(s, block + 4, sizeof(s));
  const uint32_t sc_lo = s[0] & 0x3f3f3f3fu;
  const uint32_t m_lo = s[1] & 0x3f3f3f3fu;
  const uint32_t sc_hi = (s[2] & 0x0f0f0f0fu) | (((s[0] >> 6) & 0x03030303u) << 4);
  const uint32_t m_hi = ((s[2] >> 4) & 0x0f0f0f0fu) | (((s[1] >> 6) & 0x03030303u) << 4);
  const __m256i sc = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(static_cast<int64_t>(sc_lo | (uint64_t{sc_hi} << 32))));
  const __m256i m = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(static_cast<int64_t>(m_lo | (uint64_t{m_hi} << 32))));
  _mm256_storeu_ps(ds, _mm256_mul_ps(_mm256_set1_ps(HalfAt(block)), ToFloat(sc)));
  _mm256_storeu_ps(neg_ms, _mm256_mul_ps(_mm256_set1_ps(-HalfAt(block + 2)), ToFloat(m)));
}

// Sub-block s (32 elements) is the low (s even) or high (s odd) nibbles of qs[32 (s / 2), +32).
// With kFifthBits (q5_K), bit s of qh[i] is the fifth bit of element 32 s + i.
template <bool kFifthBits>
PDSERVE_INLINE void DecodeKQuant(const uint8_t* block, const uint8_t* qh, const uint8_t* qs, __m256* w) {
  const __m256i low4 = _mm256_set1_epi32(0x0F);
  const __m256i bit4 = _mm256_set1_epi32(0x10);
  alignas(32) float ds[8], neg_ms[8];
  KQuantScales(block, ds, neg_ms);
  __m256i high[4];
  if (kFifthBits) {
    for (int j = 0; j < 4; ++j) high[j] = Bytes8(qh + 8 * j);
  }
  for (int pair = 0; pair < 4; ++pair) {
    __m256i bytes[4];
    for (int j = 0; j < 4; ++j) bytes[j] = Bytes8(qs + 32 * pair + 8 * j);
    for (int half = 0; half < 2; ++half) {
      const int s = 2 * pair + half;
      const __m256 d = _mm256_broadcast_ss(&ds[s]), m = _mm256_broadcast_ss(&neg_ms[s]);
      for (int j = 0; j < 4; ++j) {
        __m256i q = half ? _mm256_srli_epi32(bytes[j], 4) : _mm256_and_si256(bytes[j], low4);
        if (kFifthBits) {
          const __m256i h = s <= 4 ? _mm256_sll_epi32(high[j], _mm_cvtsi32_si128(4 - s))
                                   : _mm256_srl_epi32(high[j], _mm_cvtsi32_si128(s - 4));
          q = _mm256_or_si256(q, _mm256_and_si256(h, bit4));
        }
        w[4 * s + j] = _mm256_fmadd_ps(d, ToFloat(q), m);
      }
    }
  }
}

PDSERVE_INLINE void DecodeQ4_K(const uint8_t* block, __m256* w) {
  DecodeKQuant<false>(block, nullptr, block + 16, w);
}

PDSERVE_INLINE void DecodeQ5_K(const uint8_t* block, __m256* w) {
  DecodeKQuant<true>(block, block + 16, block + 48, w);
}

// Element 128 h + 32 k + i of a q6_K block (see scalar_kernels.cc): low bits from
// ql[64h + 32(k % 2) + i] >> 4(k / 2), high bits from qh[32h + i] >> 2k, scale scales[e / 16].
PDSERVE_INLINE void DecodeQ6_K(const uint8_t* block, __m256* w) {
  const __m256i low4 = _mm256_set1_epi32(0x0F);
  const __m256i low2 = _mm256_set1_epi32(0x03);
  const __m256i thirty_two = _mm256_set1_epi32(32);
  // The 16 group scales d·scales[g].
  alignas(32) float dg[16];
  const __m256 d = _mm256_set1_ps(HalfAt(block + 208));
  for (int half = 0; half < 2; ++half) {
    const __m256i sc = _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(block + 192 + 8 * half)));
    _mm256_store_ps(dg + 8 * half, _mm256_mul_ps(d, ToFloat(sc)));
  }
  for (int h = 0; h < 2; ++h) {
    for (int j = 0; j < 4; ++j) {
      const __m256i ql0 = Bytes8(block + 64 * h + 8 * j);       // k = 0 (low), 2 (high)
      const __m256i ql1 = Bytes8(block + 64 * h + 32 + 8 * j);  // k = 1 (low), 3 (high)
      const __m256i qh = Bytes8(block + 128 + 32 * h + 8 * j);
      for (int k = 0; k < 4; ++k) {
        const __m256i ql = k % 2 ? ql1 : ql0;
        const __m256i lo = k / 2 ? _mm256_srli_epi32(ql, 4) : _mm256_and_si256(ql, low4);
        const __m256i hi = _mm256_and_si256(_mm256_srl_epi32(qh, _mm_cvtsi32_si128(2 * k)), low2);
        const __m256i q = _mm256_sub_epi32(_mm256_or_si256(lo, _mm256_slli_epi32(hi, 4)), thirty_two);
        const int c = 4 * h + k;  // the chunk of 32; its elements 8 j .. 8 j + 7 use scale 2c + j / 2
        w[4 * c + j] = _mm256_mul_ps(_mm256_broadcast_ss(&dg[2 * c + j / 2]), ToFloat(q));
      }
    }
  }
}

// 8 halves as floats, bit for bit as HalfToFloat: F16C quiets signalling NaNs, numpy does not.
PDSERVE_INLINE __m256 HalvesToFloats(const uint8_t* p) {
  const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  const __m256 f = _mm256_cvtph_ps(h);
  const __m256i h32 = _mm256_cvtepu16_epi32(h);
  const __m256i magnitude = _mm256_and_si256(h32, _mm256_set1_epi32(0x7fff));
  const __m256i is_nan = _mm256_cmpgt_epi32(magnitude, _mm256_set1_epi32(0x7c00));
  const __m256i nan_bits = _mm256_or_si256(
      _mm256_slli_epi32(_mm256_and_si256(h32, _mm256_set1_epi32(0x8000)), 16),
      _mm256_or_si256(_mm256_set1_epi32(0x7f800000), _mm256_slli_epi32(_mm256_and_si256(h32, _mm256_set1_epi32(0x3ff)), 13)));
  return _mm256_blendv_ps(f, _mm256_castsi256_ps(nan_bits), _mm256_castsi256_ps(is_nan));
}

PDSERVE_INLINE __m256 Bf16sToFloats(const uint8_t* p) {
  const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(b), 16));
}

PDSERVE_INLINE void DecodeF16(const uint8_t* p, __m256* w) { w[0] = HalvesToFloats(p); }
PDSERVE_INLINE void DecodeBf16(const uint8_t* p, __m256* w) { w[0] = Bf16sToFloats(p); }

float ScalarHalf(const uint8_t* p, bool bf16) {
  uint16_t h;
  std::memcpy(&h, p, sizeof(h));
  return bf16 ? Bf16BitsToFloat(h) : HalfToFloat(h);
}

PDSERVE_INLINE float HorizontalSum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// A block format: kElems elements in kBytes bytes, decoded by kDecode into kElems / 8 vectors.
template <int kElems, int kBytes, void (*kDecode)(const uint8_t*, __m256*)>
struct Format {
  static void Dequantize(const uint8_t* src, float* dst, int64_t n) {
    for (int64_t b = 0; b < n / kElems; ++b) {
      __m256 w[kElems / 8];
      kDecode(src + b * kBytes, w);
      for (int v = 0; v < kElems / 8; ++v) _mm256_storeu_ps(dst + b * kElems + 8 * v, w[v]);
    }
  }

  // kRows rows at once, each with its own accumulator, so that decoding one row overlaps the
  // multiply-add chain of another. Precondition: n % kElems == 0.
  template <int kRows>
  static void FusedRows(const uint8_t* w, size_t row_bytes, int64_t n, const float* x, float* y) {
    __m256 acc[kRows];
    for (int r = 0; r < kRows; ++r) acc[r] = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / kElems; ++b) {
      const float* xb = x + b * kElems;
      // All rows' blocks first, then the multiply-adds interleaved across rows: a row's own
      // chain (one accumulator) is latency-bound, kRows chains side by side are not.
      __m256 wv[kRows][kElems / 8];
      for (int r = 0; r < kRows; ++r) kDecode(w + r * row_bytes + b * kBytes, wv[r]);
      for (int v = 0; v < kElems / 8; ++v) {
        const __m256 xv = _mm256_loadu_ps(xb + 8 * v);
#pragma GCC unroll 8
        for (int r = 0; r < kRows; ++r) acc[r] = _mm256_fmadd_ps(wv[r][v], xv, acc[r]);
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

using F16Format = Format<8, 16, DecodeF16>;
using Bf16Format = Format<8, 16, DecodeBf16>;
using Q4_0Format = Format<32, 18, DecodeQ4_0>;
using Q4_1Format = Format<32, 20, DecodeQ4_1>;
using Q5_0Format = Format<32, 22, DecodeQ5_0>;
using Q5_1Format = Format<32, 24, DecodeQ5_1>;
using Q8_0Format = Format<32, 34, DecodeQ8_0>;
using Q4_KFormat = Format<256, 144, DecodeQ4_K>;
using Q5_KFormat = Format<256, 176, DecodeQ5_K>;
using Q6_KFormat = Format<256, 210, DecodeQ6_K>;

void Avx2Dequantize(TensorType type, const uint8_t* src, float* dst, int64_t n) {
  switch (type) {
    case TensorType::kF32:
      std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
      return;
    case TensorType::kF16:
    case TensorType::kBF16: {
      const bool bf16 = type == TensorType::kBF16;
      const int64_t n_vector = n / 8 * 8;
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

bool Avx2FusedRows(TensorType type, const uint8_t* w, size_t row_bytes, int64_t n_rows, int64_t n,
                   const float* x, float* y) {
  switch (type) {
    case TensorType::kF32:
      return false;  // nothing to decode: dot_tile reads the rows directly
    case TensorType::kF16:
      if (n % 8 != 0) return false;
      F16Format::FusedRows(w, row_bytes, n_rows, n, x, y);
      return true;
    case TensorType::kBF16:
      if (n % 8 != 0) return false;
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
  __m256 acc[kRows][kTokens];
  for (int r = 0; r < kRows; ++r) {
    for (int t = 0; t < kTokens; ++t) acc[r][t] = _mm256_setzero_ps();
  }
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 wv[kRows];
    for (int r = 0; r < kRows; ++r) wv[r] = _mm256_loadu_ps(w + r * w_stride + i);
    for (int t = 0; t < kTokens; ++t) {
      const __m256 xv = _mm256_loadu_ps(x + t * x_stride + i);
      for (int r = 0; r < kRows; ++r) acc[r][t] = _mm256_fmadd_ps(wv[r], xv, acc[r][t]);
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
constexpr int kBlockRows = 3;
constexpr int kBlockTokens = 4;
constexpr DotBlockFn kDotBlocks[kBlockRows][kBlockTokens] = {
    {DotBlock<1, 1>, DotBlock<1, 2>, DotBlock<1, 3>, DotBlock<1, 4>},
    {DotBlock<2, 1>, DotBlock<2, 2>, DotBlock<2, 3>, DotBlock<2, 4>},
    {DotBlock<3, 1>, DotBlock<3, 2>, DotBlock<3, 3>, DotBlock<3, 4>},
};

void Avx2DotTile(const float* w, int64_t w_stride, int64_t n_w, const float* x, int64_t x_stride,
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

const IsaKernels& Avx2Kernels() {
  static constexpr IsaKernels kKernels = {Avx2Dequantize, Avx2DotTile, Avx2FusedRows};
  return kKernels;
}

}  // namespace pdserve::kernels::internal
