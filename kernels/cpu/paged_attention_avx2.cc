// The AVX2 + FMA + F16C inner loops of PagedAttention (see attention_kernels.h). Compiled with
// -mavx2 -mfma -mf16c; reached only when the CPU has them. No standard-library templates here
// (see avx2_kernels.cc).

#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "kernels/cpu/attention_kernels.h"
#include "kernels/cpu/half_bits.h"

namespace pdserve::kernels::internal {
namespace {

#define PDSERVE_INLINE inline __attribute__((always_inline))

// Position p's key row for kv head h; the value row is kv.v_offset_bytes further.
template <KvDtype kDtype>
PDSERVE_INLINE const uint8_t* RowAt(const PagedKvLayer& kv, int64_t p, int h) {
  constexpr size_t kElem = kDtype == KvDtype::kF32 ? 4 : 2;
  const size_t in_block = static_cast<size_t>(p % kv.block_size);
  return kv.k_slabs[p / kv.block_size] + (in_block * kv.n_kv_heads + h) * static_cast<size_t>(kv.head_dim) * kElem;
}

template <KvDtype kDtype>
PDSERVE_INLINE __m256 Load8(const uint8_t* row, int i) {
  if constexpr (kDtype == KvDtype::kF32) {
    return _mm256_loadu_ps(reinterpret_cast<const float*>(row) + i);
  } else if constexpr (kDtype == KvDtype::kF16) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 2 * i)));
  } else {
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 2 * i));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(b), 16));
  }
}

template <KvDtype kDtype>
PDSERVE_INLINE float Load1(const uint8_t* row, int i) {
  uint16_t bits;
  if constexpr (kDtype == KvDtype::kF32) {
    float f;
    __builtin_memcpy(&f, row + 4 * i, sizeof(f));
    return f;
  } else if constexpr (kDtype == KvDtype::kF16) {
    __builtin_memcpy(&bits, row + 2 * i, sizeof(bits));
    return HalfToFloat(bits);
  } else {
    __builtin_memcpy(&bits, row + 2 * i, sizeof(bits));
    return Bf16BitsToFloat(bits);
  }
}

PDSERVE_INLINE float HorizontalSum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// kPositions scores at once, each one accumulator over the 8-element vectors in order, then the
// head_dim % 8 tail, so a score does not depend on its neighbours.
template <KvDtype kDtype, int kPositions>
PDSERVE_INLINE void ScoreGroup(const float* q, const PagedKvLayer& kv, int kv_head, int64_t p0,
                               float scale, float* scores) {
  const uint8_t* rows[kPositions];
  __m256 acc[kPositions];
  for (int j = 0; j < kPositions; ++j) {
    rows[j] = RowAt<kDtype>(kv, p0 + j, kv_head);
    acc[j] = _mm256_setzero_ps();
  }
  int i = 0;
  for (; i + 8 <= kv.head_dim; i += 8) {
    const __m256 qv = _mm256_loadu_ps(q + i);
    for (int j = 0; j < kPositions; ++j) acc[j] = _mm256_fmadd_ps(Load8<kDtype>(rows[j], i), qv, acc[j]);
  }
  for (int j = 0; j < kPositions; ++j) {
    float tail = 0.0f;
    for (int t = i; t < kv.head_dim; ++t) tail += q[t] * Load1<kDtype>(rows[j], t);
    scores[p0 + j] = (HorizontalSum(acc[j]) + tail) * scale;
  }
}

template <KvDtype kDtype>
void Scores(const float* q, const PagedKvLayer& kv, int kv_head, int64_t n_ctx, float scale,
            float* scores) {
  int64_t p = 0;
  for (; p + 4 <= n_ctx; p += 4) ScoreGroup<kDtype, 4>(q, kv, kv_head, p, scale, scores);
  for (; p < n_ctx; ++p) ScoreGroup<kDtype, 1>(q, kv, kv_head, p, scale, scores);
}

// out[i0, i0 + 8 kVectors) over all positions.
template <KvDtype kDtype, int kVectors>
PDSERVE_INLINE void WeightedChunk(const float* weights, const PagedKvLayer& kv, int kv_head, int64_t n_ctx,
                                  int i0, float* out) {
  __m256 acc[kVectors];
  for (int j = 0; j < kVectors; ++j) acc[j] = _mm256_setzero_ps();
  for (int64_t p = 0; p < n_ctx; ++p) {
    const uint8_t* value = RowAt<kDtype>(kv, p, kv_head) + kv.v_offset_bytes;
    const __m256 w = _mm256_broadcast_ss(weights + p);
    for (int j = 0; j < kVectors; ++j) acc[j] = _mm256_fmadd_ps(w, Load8<kDtype>(value, i0 + 8 * j), acc[j]);
  }
  for (int j = 0; j < kVectors; ++j) _mm256_storeu_ps(out + i0 + 8 * j, acc[j]);
}

template <KvDtype kDtype>
void WeightedValues(const float* weights, const PagedKvLayer& kv, int kv_head, int64_t n_ctx,
                    float* out) {
  int i = 0;
  for (; i + 64 <= kv.head_dim; i += 64) WeightedChunk<kDtype, 8>(weights, kv, kv_head, n_ctx, i, out);
  for (; i + 8 <= kv.head_dim; i += 8) WeightedChunk<kDtype, 1>(weights, kv, kv_head, n_ctx, i, out);
  for (; i < kv.head_dim; ++i) {
    float sum = 0.0f;
    for (int64_t p = 0; p < n_ctx; ++p) {
      sum += weights[p] * Load1<kDtype>(RowAt<kDtype>(kv, p, kv_head) + kv.v_offset_bytes, i);
    }
    out[i] = sum;
  }
}

void Avx2Scores(const float* q, const PagedKvLayer& kv, int kv_head, int64_t n_ctx, float scale,
                float* scores) {
  switch (kv.dtype) {
    case KvDtype::kF32: return Scores<KvDtype::kF32>(q, kv, kv_head, n_ctx, scale, scores);
    case KvDtype::kF16: return Scores<KvDtype::kF16>(q, kv, kv_head, n_ctx, scale, scores);
    case KvDtype::kBF16: return Scores<KvDtype::kBF16>(q, kv, kv_head, n_ctx, scale, scores);
  }
}

void Avx2WeightedValues(const float* weights, const PagedKvLayer& kv, int kv_head, int64_t n_ctx,
                        float* out) {
  switch (kv.dtype) {
    case KvDtype::kF32: return WeightedValues<KvDtype::kF32>(weights, kv, kv_head, n_ctx, out);
    case KvDtype::kF16: return WeightedValues<KvDtype::kF16>(weights, kv, kv_head, n_ctx, out);
    case KvDtype::kBF16: return WeightedValues<KvDtype::kBF16>(weights, kv, kv_head, n_ctx, out);
  }
}

}  // namespace

const AttentionKernels& Avx2AttentionKernels() {
  static constexpr AttentionKernels kKernels = {Avx2Scores, Avx2WeightedValues};
  return kKernels;
}

}  // namespace pdserve::kernels::internal
