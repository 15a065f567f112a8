#pragma once
// Internal to kernels/cpu: the two inner loops of PagedAttention for one (query head, kv head),
// per instruction-set variant. Like isa_kernels.h, no inline functions or templates here.

#include <cstdint>

#include "kernels/cpu/paged_attention.h"

namespace pdserve::kernels::internal {

struct AttentionKernels {
  // scores[p] = scale · Σ_i q[i] · K[p][kv_head][i], for p in [0, n_ctx).
  void (*scores)(const float* q, const PagedKvLayer& kv, int kv_head, int64_t n_ctx, float scale,
                 float* scores);
  // out[i] = Σ_p weights[p] · V[p][kv_head][i], for i in [0, head_dim).
  void (*weighted_values)(const float* weights, const PagedKvLayer& kv, int kv_head, int64_t n_ctx,
                          float* out);
};

const AttentionKernels& ScalarAttentionKernels();
#if defined(PDSERVE_KERNELS_AVX2)
const AttentionKernels& Avx2AttentionKernels();
#endif

}  // namespace pdserve::kernels::internal
