#pragma once
// Host-side argument checks shared by the attention launchers (private).

#include <cuda_runtime_api.h>

#include "kernels/cuda/cuda_util.cuh"
#include "kernels/cuda/paged_kv.h"

namespace pdserve::kernels::gpu::detail {

inline constexpr int kMaxAttentionHeadDim = 256;

// The pool view is usable by the attention kernels: known dtype, head_dim % 8 == 0 and <= 256,
// and every K/V row 16-byte aligned.
inline cudaError_t CheckAttentionKv(const PagedKvView& kv, int n_heads) {
  PDSERVE_GPU_REQUIRE(kv.dtype == KvDtype::kF32 || kv.dtype == KvDtype::kF16 ||
                          kv.dtype == KvDtype::kBF16,
                      "paged_attention: unknown KV dtype");
  PDSERVE_GPU_REQUIRE(kv.block_size > 0 && kv.n_kv_heads > 0,
                      "paged_attention: block_size and n_kv_heads must be > 0");
  PDSERVE_GPU_REQUIRE(kv.head_dim > 0 && kv.head_dim % 8 == 0 &&
                          kv.head_dim <= kMaxAttentionHeadDim,
                      "paged_attention: head_dim must be a multiple of 8 in [8, 256]");
  PDSERVE_GPU_REQUIRE(n_heads > 0 && n_heads % kv.n_kv_heads == 0,
                      "paged_attention: n_heads must be a positive multiple of n_kv_heads");
  PDSERVE_GPU_REQUIRE(kv.pool != nullptr && kv.n_blocks >= 0, "paged_attention: pool is null");
  PDSERVE_GPU_REQUIRE(Aligned(kv.pool, 16) && kv.block_bytes % 16 == 0 &&
                          kv.k_offset_bytes % 16 == 0 && kv.v_offset_bytes % 16 == 0,
                      "paged_attention: pool, block_bytes and slab offsets must be 16-byte "
                      "aligned");
  return cudaSuccess;
}

}  // namespace pdserve::kernels::gpu::detail
