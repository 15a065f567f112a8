// The AVX2 + FMA + F16C variant. Compiled with -mavx2 -mfma -mf16c; reached only when the CPU
// has them (isa.cc). Uses no standard-library templates or inline functions, whose out-of-line
// copies would carry these instructions into code shared with the other variants.
//
// Dequantization is bit for bit the scalar one: every product of an f16 scale, a small integer
// scale and a quant is exact in f32, so a fused multiply-add rounds once where the reference's
// separate multiply and add also round once (only at the add).
//
// Dot order: element i goes into accumulator (i / 8) % 4, lane i % 8; after the last full vector,
// the rest (n % 8 elements, plain types only) into one scalar sum in order; the result is
// hsum((a0 + a1) + (a2 + a3)) + tail.

#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "kernels/cpu/half_bits.h"
#include "kernels/cpu/isa_kernels.h"

namespace pdserve::kernels::internal {
namespace {

float HalfAt(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, sizeof(h));
  return _cvtsh_ss(h);
}

uint32_t U32At(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

// 32 bytes of values < 256 as 4 vectors of 8 floats, in order.
inline void BytesToFloats(__m256i q, __m256 out[4]) {
  const __m128i lo = _mm256_castsi256_si128(q);
  const __m128i hi = _mm256_extracti128_si256(q, 1);
  out[0] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(lo));
  out[1] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(lo, 8)));
  out[2] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(hi));
  out[3] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(hi, 8)));
}

// The 16 bytes at qs as 32 nibbles: the low nibbles (elements 0..15), then the high ones.
inline __m256i Nibbles16(const uint8_t* qs) {
  const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  const __m128i mask = _mm_set1_epi8(0x0F);
  return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(bytes, 4), mask), _mm_and_si128(bytes, mask));
}

// Byte j is 0x10 where bit j of `bits` is set, else 0.
inline __m256i FifthBits(uint32_t bits) {
  const __m256i spread = _mm256_shuffle_epi8(
      _mm256_set1_epi32(static_cast<int>(bits)),
      _mm256_setr_epi64x(0x0000000000000000, 0x0101010101010101, 0x0202020202020202,
                         0x0303030303030303));
  const __m256i set = _mm256_cmpeq_epi8(_mm256_or_si256(spread, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe)),
                                        _mm256_set1_epi64x(-1));
  return _mm256_and_si256(set, _mm256_set1_epi8(0x10));
}

// Decoders: call emit(c, w) for each 32-element chunk c of a row of n elements, in order, with
// w[4] its values. `emit` is a lambda of this unit.

template <typename Emit>
void DecodeQ4_0(const uint8_t* row, int64_t n, Emit&& emit) {
  const __m256 eight = _mm256_set1_ps(8.0f);
  for (int64_t b = 0; b < n / 32; ++b) {
    const uint8_t* block = row + 18 * b;
    const __m256 d = _mm256_set1_ps(HalfAt(block));
    __m256 w[4];
    BytesToFloats(Nibbles16(block + 2), w);
    for (int j = 0; j < 4; ++j) w[j] = _mm256_mul_ps(d, _mm256_sub_ps(w[j], eight));
    emit(b, w);
  }
}

template <typename Emit>
void DecodeQ4_1(const uint8_t* row, int64_t n, Emit&& emit) {
  for (int64_t b = 0; b < n / 32; ++b) {
    const uint8_t* block = row + 20 * b;
    const __m256 d = _mm256_set1_ps(HalfAt(block));
    const __m256 m = _mm256_set1_ps(HalfAt(block + 2));
    __m256 w[4];
    BytesToFloats(Nibbles16(block + 4), w);
    for (int j = 0; j < 4; ++j) w[j] = _mm256_fmadd_ps(d, w[j], m);
    emit(b, w);
  }
}

template <typename Emit>
void DecodeQ5_0(const uint8_t* row, int64_t n, Emit&& emit) {
  const __m256 sixteen = _mm256_set1_ps(16.0f);
  for (int64_t b = 0; b < n / 32; ++b) {
    const uint8_t* block = row + 22 * b;
    const __m256 d = _mm256_set1_ps(HalfAt(block));
    __m256 w[4];
    BytesToFloats(_mm256_or_si256(Nibbles16(block + 6), FifthBits(U32At(block + 2))), w);
    for (int j = 0; j < 4; ++j) w[j] = _mm256_mul_ps(d, _mm256_sub_ps(w[j], sixteen));
    emit(b, w);
  }
}

template <typename Emit>
void DecodeQ5_1(const uint8_t* row, int64_t n, Emit&& emit) {
  for (int64_t b = 0; b < n / 32; ++b) {
    const uint8_t* block = row + 24 * b;
    const __m256 d = _mm256_set1_ps(HalfAt(block));
    const __m256 m = _mm256_set1_ps(HalfAt(block + 2));
    __m256 w[4];
    BytesToFloats(_mm256_or_si256(Nibbles16(block + 8), FifthBits(U32At(block + 4))), w);
    for (int j = 0; j < 4; ++j) w[j] = _mm256_fmadd_ps(d, w[j], m);
    emit(b, w);
  }
}

template <typename Emit>
void DecodeQ8_0(const uint8_t* row, int64_t n, Emit&& emit) {
  for (int64_t b = 0; b < n / 32; ++b) {
    const uint8_t* block = row + 34 * b;
    const __m256 d = _mm256_set1_ps(HalfAt(block));
    __m256 w[4];
    for (int j = 0; j < 4; ++j) {
      const __m128i q = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(block + 2 + 8 * j));
      w[j] = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q)), d);
    }
    emit(b, w);
  }
}

// The scale d·sc[s] and offset dmin·m[s] of the 8 sub-blocks of a q4_K / q5_K block.
void KQuantScales(const uint8_t* block, float ds[8], float ms[8]) {
  const float d = HalfAt(block);
  const float dmin = HalfAt(block + 2);
  const uint8_t* s = block + 4;
  for (int j = 0; j < 4; ++j) {
    ds[j] = d * static_cast<float>(s[j] & 0x3F);
    ms[j] = dmin * static_cast<float>(s[j + 4] & 0x3F);
    ds[j + 4] = d * static_cast<float>((s[j + 8] & 0x0F) | ((s[j] >> 2) & 0x30));
    ms[j + 4] = dmin * static_cast<float>((s[j + 8] >> 4) | ((s[j + 4] >> 2) & 0x30));
  }
}

template <typename Emit>
void DecodeQ4_K(const uint8_t* row, int64_t n, Emit&& emit) {
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  for (int64_t b = 0; b < n / 256; ++b) {
    const uint8_t* block = row + 144 * b;
    float ds[8], ms[8];
    KQuantScales(block, ds, ms);
    for (int pair = 0; pair < 4; ++pair) {
      const __m256i bytes = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + 16 + 32 * pair));
      for (int half = 0; half < 2; ++half) {
        const int s = 2 * pair + half;
        const __m256i q = _mm256_and_si256(half ? _mm256_srli_epi16(bytes, 4) : bytes, low4);
        const __m256 d = _mm256_set1_ps(ds[s]), m = _mm256_set1_ps(-ms[s]);
        __m256 w[4];
        BytesToFloats(q, w);
        for (int j = 0; j < 4; ++j) w[j] = _mm256_fmadd_ps(d, w[j], m);
        emit(8 * b + s, w);
      }
    }
  }
}

template <typename Emit>
void DecodeQ5_K(const uint8_t* row, int64_t n, Emit&& emit) {
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  const __m256i zero = _mm256_setzero_si256();
  const __m256i bit4 = _mm256_set1_epi8(0x10);
  for (int64_t b = 0; b < n / 256; ++b) {
    const uint8_t* block = row + 176 * b;
    float ds[8], ms[8];
    KQuantScales(block, ds, ms);
    const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + 16));
    for (int pair = 0; pair < 4; ++pair) {
      const __m256i bytes = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + 48 + 32 * pair));
      for (int half = 0; half < 2; ++half) {
        const int s = 2 * pair + half;
        const __m256i high_clear =
            _mm256_cmpeq_epi8(_mm256_and_si256(qh, _mm256_set1_epi8(static_cast<char>(1 << s))), zero);
        const __m256i q = _mm256_or_si256(_mm256_and_si256(half ? _mm256_srli_epi16(bytes, 4) : bytes, low4),
                                          _mm256_andnot_si256(high_clear, bit4));
        const __m256 d = _mm256_set1_ps(ds[s]), m = _mm256_set1_ps(-ms[s]);
        __m256 w[4];
        BytesToFloats(q, w);
        for (int j = 0; j < 4; ++j) w[j] = _mm256_fmadd_ps(d, w[j], m);
        emit(8 * b + s, w);
      }
    }
  }
}

// Chunk c = 4h + k of a q6_K block (see scalar_kernels.cc): low bits from
// ql[64h + 32(k % 2) + i] >> 4(k / 2), high bits from qh[32h + i] >> 2k.
template <typename Emit>
void DecodeQ6_K(const uint8_t* row, int64_t n, Emit&& emit) {
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  const __m256i low2 = _mm256_set1_epi8(0x03);
  const __m256 thirty_two = _mm256_set1_ps(32.0f);
  for (int64_t b = 0; b < n / 256; ++b) {
    const uint8_t* block = row + 210 * b;
    const int8_t* scales = reinterpret_cast<const int8_t*>(block + 192);
    const float d = HalfAt(block + 208);
    for (int h = 0; h < 2; ++h) {
      const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + 128 + 32 * h));
      for (int k = 0; k < 4; ++k) {
        const __m256i ql = _mm256_loadu_si256(
            reinterpret_cast<const __m256i*>(block + 64 * h + 32 * (k % 2)));
        const __m256i lo = _mm256_and_si256(k / 2 ? _mm256_srli_epi16(ql, 4) : ql, low4);
        const __m256i hi = _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * k)), low2);
        const __m256i q = _mm256_or_si256(lo, _mm256_slli_epi16(hi, 4));
        const int c = 4 * h + k;
        const __m256 d0 = _mm256_set1_ps(d * static_cast<float>(scales[2 * c]));
        const __m256 d1 = _mm256_set1_ps(d * static_cast<float>(scales[2 * c + 1]));
        __m256 w[4];
        BytesToFloats(q, w);
        w[0] = _mm256_mul_ps(d0, _mm256_sub_ps(w[0], thirty_two));
        w[1] = _mm256_mul_ps(d0, _mm256_sub_ps(w[1], thirty_two));
        w[2] = _mm256_mul_ps(d1, _mm256_sub_ps(w[2], thirty_two));
        w[3] = _mm256_mul_ps(d1, _mm256_sub_ps(w[3], thirty_two));
        emit(8 * b + c, w);
      }
    }
  }
}

// Calls the decoder of a block-quantized type; false for f32, f16 and bf16.
template <typename Emit>
bool DecodeQuantized(TensorType type, const uint8_t* row, int64_t n, Emit&& emit) {
  switch (type) {
    case TensorType::kQ4_0: DecodeQ4_0(row, n, emit); return true;
    case TensorType::kQ4_1: DecodeQ4_1(row, n, emit); return true;
    case TensorType::kQ5_0: DecodeQ5_0(row, n, emit); return true;
    case TensorType::kQ5_1: DecodeQ5_1(row, n, emit); return true;
    case TensorType::kQ8_0: DecodeQ8_0(row, n, emit); return true;
    case TensorType::kQ4_K: DecodeQ4_K(row, n, emit); return true;
    case TensorType::kQ5_K: DecodeQ5_K(row, n, emit); return true;
    case TensorType::kQ6_K: DecodeQ6_K(row, n, emit); return true;
    default: return false;
  }
}

// 8 halves as floats, bit for bit as HalfToFloat: F16C quiets signalling NaNs, numpy does not.
inline __m256 HalvesToFloats(const uint8_t* p) {
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

inline __m256 Bf16sToFloats(const uint8_t* p) {
  const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(b), 16));
}

float ScalarHalf(const uint8_t* p, bool bf16) {
  uint16_t h;
  std::memcpy(&h, p, sizeof(h));
  return bf16 ? Bf16BitsToFloat(h) : HalfToFloat(h);
}

void Avx2Dequantize(TensorType type, const uint8_t* src, float* dst, int64_t n) {
  if (type == TensorType::kF32) {
    std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
    return;
  }
  if (type == TensorType::kF16 || type == TensorType::kBF16) {
    const bool bf16 = type == TensorType::kBF16;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
      _mm256_storeu_ps(dst + i, bf16 ? Bf16sToFloats(src + 2 * i) : HalvesToFloats(src + 2 * i));
    }
    for (; i < n; ++i) dst[i] = ScalarHalf(src + 2 * i, bf16);
    return;
  }
  DecodeQuantized(type, src, n, [dst](int64_t c, const __m256* w) {
    for (int j = 0; j < 4; ++j) _mm256_storeu_ps(dst + 32 * c + 8 * j, w[j]);
  });
}

inline float HorizontalSum(__m256 a0, __m256 a1, __m256 a2, __m256 a3) {
  const __m256 v = _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3));
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// One output with the dot order above.
float Dot(const float* w, const float* x, int64_t n) {
  __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    for (int j = 0; j < 4; ++j) {
      acc[j] = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 8 * j), _mm256_loadu_ps(x + i + 8 * j), acc[j]);
    }
  }
  for (int j = 0; i + 8 <= n; i += 8, ++j) {
    acc[j] = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(x + i), acc[j]);
  }
  float tail = 0.0f;
  for (; i < n; ++i) tail += w[i] * x[i];
  return HorizontalSum(acc[0], acc[1], acc[2], acc[3]) + tail;
}

// Two outputs sharing each load of w, each in exactly Dot's order.
void Dot2(const float* w, const float* x0, const float* x1, int64_t n, float* out0, float* out1) {
  __m256 a[4], b[4];
  for (int j = 0; j < 4; ++j) a[j] = b[j] = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    for (int j = 0; j < 4; ++j) {
      const __m256 wv = _mm256_loadu_ps(w + i + 8 * j);
      a[j] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x0 + i + 8 * j), a[j]);
      b[j] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x1 + i + 8 * j), b[j]);
    }
  }
  for (int j = 0; i + 8 <= n; i += 8, ++j) {
    const __m256 wv = _mm256_loadu_ps(w + i);
    a[j] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x0 + i), a[j]);
    b[j] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x1 + i), b[j]);
  }
  float tail0 = 0.0f, tail1 = 0.0f;
  for (; i < n; ++i) {
    tail0 += w[i] * x0[i];
    tail1 += w[i] * x1[i];
  }
  *out0 = HorizontalSum(a[0], a[1], a[2], a[3]) + tail0;
  *out1 = HorizontalSum(b[0], b[1], b[2], b[3]) + tail1;
}

void Avx2DotMany(const float* w, int64_t n, const float* x, int64_t x_stride, int64_t n_x,
                 float* out, int64_t out_stride) {
  int64_t k = 0;
  for (; k + 2 <= n_x; k += 2) {
    Dot2(w, x + k * x_stride, x + (k + 1) * x_stride, n, out + k * out_stride,
         out + (k + 1) * out_stride);
  }
  if (k < n_x) out[k * out_stride] = Dot(w, x + k * x_stride, n);
}

bool Avx2FusedDot(TensorType type, const uint8_t* row, int64_t n, const float* x, float* out) {
  __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
  if (type == TensorType::kF16 || type == TensorType::kBF16) {
    const bool bf16 = type == TensorType::kBF16;
    int64_t i = 0;
    for (int j = 0; i + 8 <= n; i += 8, j = (j + 1) & 3) {
      const __m256 w = bf16 ? Bf16sToFloats(row + 2 * i) : HalvesToFloats(row + 2 * i);
      acc[j] = _mm256_fmadd_ps(w, _mm256_loadu_ps(x + i), acc[j]);
    }
    float tail = 0.0f;
    for (; i < n; ++i) tail += ScalarHalf(row + 2 * i, bf16) * x[i];
    *out = HorizontalSum(acc[0], acc[1], acc[2], acc[3]) + tail;
    return true;
  }
  const bool fused = DecodeQuantized(type, row, n, [&acc, x](int64_t c, const __m256* w) {
    for (int j = 0; j < 4; ++j) acc[j] = _mm256_fmadd_ps(w[j], _mm256_loadu_ps(x + 32 * c + 8 * j), acc[j]);
  });
  if (!fused) return false;
  *out = HorizontalSum(acc[0], acc[1], acc[2], acc[3]);
  return true;
}

}  // namespace

const IsaKernels& Avx2Kernels() {
  static constexpr IsaKernels kKernels = {Avx2Dequantize, Avx2DotMany, Avx2FusedDot};
  return kKernels;
}

}  // namespace pdserve::kernels::internal
