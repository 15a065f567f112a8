#include "kernels/cpu/paged_attention.h"

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "kernels/cpu/attention_kernels.h"
#include "kernels/cpu/half_bits.h"
#include "kernels/cpu/isa.h"
#include "kernels/cpu/ops.h"

namespace pdserve::kernels {
namespace {

// Position p's key for kv head h (the value is v_offset_bytes further).
const uint8_t* KeyAt(const PagedKvLayer& kv, int64_t p, int h) {
  const size_t elem = static_cast<size_t>(KvDtypeBytes(kv.dtype));
  const size_t in_block = static_cast<size_t>(p % kv.block_size);
  return kv.k_slabs[p / kv.block_size] +
         (in_block * kv.n_kv_heads + h) * static_cast<size_t>(kv.head_dim) * elem;
}

float LoadElem(const uint8_t* base, int i, KvDtype dtype) {
  uint16_t bits;
  switch (dtype) {
    case KvDtype::kF32: {
      float f;
      std::memcpy(&f, base + 4 * i, sizeof(f));
      return f;
    }
    case KvDtype::kF16:
      std::memcpy(&bits, base + 2 * i, sizeof(bits));
      return internal::HalfToFloat(bits);
    case KvDtype::kBF16:
      std::memcpy(&bits, base + 2 * i, sizeof(bits));
      return internal::Bf16BitsToFloat(bits);
  }
  std::abort();
}

void ScalarScores(const float* q, const PagedKvLayer& kv, int kv_head, int64_t n_ctx, float scale,
                  float* scores) {
  for (int64_t p = 0; p < n_ctx; ++p) {
    const uint8_t* key = KeyAt(kv, p, kv_head);
    float dot = 0.0f;
    for (int i = 0; i < kv.head_dim; ++i) dot += q[i] * LoadElem(key, i, kv.dtype);
    scores[p] = dot * scale;
  }
}

void ScalarWeightedValues(const float* weights, const PagedKvLayer& kv, int kv_head, int64_t n_ctx,
                          float* out) {
  for (int i = 0; i < kv.head_dim; ++i) out[i] = 0.0f;
  for (int64_t p = 0; p < n_ctx; ++p) {
    const uint8_t* value = KeyAt(kv, p, kv_head) + kv.v_offset_bytes;
    for (int i = 0; i < kv.head_dim; ++i) out[i] += weights[p] * LoadElem(value, i, kv.dtype);
  }
}

const internal::AttentionKernels& AttentionKernelsFor(Isa isa) {
#if defined(PDSERVE_KERNELS_AVX2)
  if (isa != Isa::kScalar) return internal::Avx2AttentionKernels();
#endif
  return internal::ScalarAttentionKernels();
}

void StoreRow(const float* src, int n, KvDtype dtype, uint8_t* dst) {
  switch (dtype) {
    case KvDtype::kF32:
      std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
      return;
    case KvDtype::kF16:
      for (int i = 0; i < n; ++i) {
        const uint16_t h = internal::FloatToHalf(src[i]);
        std::memcpy(dst + 2 * i, &h, sizeof(h));
      }
      return;
    case KvDtype::kBF16:
      for (int i = 0; i < n; ++i) {
        const uint16_t b = internal::FloatToBf16(src[i]);
        std::memcpy(dst + 2 * i, &b, sizeof(b));
      }
      return;
  }
  std::abort();
}

}  // namespace

int KvDtypeBytes(KvDtype dtype) {
  switch (dtype) {
    case KvDtype::kF32:
      return 4;
    case KvDtype::kF16:
    case KvDtype::kBF16:
      return 2;
  }
  std::abort();  // programmer error: not a KvDtype enumerator
}

void PagedAttention(const float* q, int n_heads, const PagedKvLayer& kv, int64_t n_ctx,
                    int head_begin, int head_end, float* scores, float* out) {
  PagedAttention(q, n_heads, kv, n_ctx, head_begin, head_end, scores, out, DetectBestIsa());
}

void PagedAttention(const float* q, int n_heads, const PagedKvLayer& kv, int64_t n_ctx,
                    int head_begin, int head_end, float* scores, float* out, Isa isa) {
  const internal::AttentionKernels& kernels = AttentionKernelsFor(isa);
  const int head_dim = kv.head_dim;
  const int group = n_heads / kv.n_kv_heads;
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  for (int h = head_begin; h < head_end; ++h) {
    const int kv_head = h / group;
    kernels.scores(q + static_cast<int64_t>(h) * head_dim, kv, kv_head, n_ctx, scale, scores);
    Softmax(scores, n_ctx);
    kernels.weighted_values(scores, kv, kv_head, n_ctx, out + static_cast<int64_t>(h) * head_dim);
  }
}

void StoreKv(const float* k, const float* v, int64_t position, const PagedKvLayer& kv,
             uint8_t* const* k_slabs_mutable) {
  const size_t elem = static_cast<size_t>(KvDtypeBytes(kv.dtype));
  const size_t row = static_cast<size_t>(kv.head_dim) * elem;
  uint8_t* slot = k_slabs_mutable[position / kv.block_size] +
                  static_cast<size_t>(position % kv.block_size) * kv.n_kv_heads * row;
  const int n = kv.n_kv_heads * kv.head_dim;
  StoreRow(k, n, kv.dtype, slot);
  StoreRow(v, n, kv.dtype, slot + kv.v_offset_bytes);
}

namespace internal {

const AttentionKernels& ScalarAttentionKernels() {
  static constexpr AttentionKernels kKernels = {ScalarScores, ScalarWeightedValues};
  return kKernels;
}

}  // namespace internal
}  // namespace pdserve::kernels
