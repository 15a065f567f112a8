#pragma once
// Attention of one query token over keys and values stored in fixed-size paged blocks (the layout
// of docs/kv-layout.md). The kernel knows nothing of the pool: it gets, for one layer, the base
// address of each block's K slab in sequence order.

#include <cstddef>
#include <cstdint>

namespace pdserve::kernels {

enum class KvDtype : uint8_t { kF32 = 0, kF16 = 1, kBF16 = 2 };

// Declared here, defined in kernels/cpu/isa.h: this header stays free of Abseil (CUDA code and
// common/kv include it for KvDtype).
enum class Isa;

int KvDtypeBytes(KvDtype dtype);

// One layer's view of a sequence's cached keys and values.
// In block b (b = position / block_size), the key of position p for kv head h starts at
//   k_slabs[b] + ((p % block_size) * n_kv_heads + h) * head_dim * elem_bytes
// and its value at the same offset from k_slabs[b] + v_offset_bytes.
struct PagedKvLayer {
  const uint8_t* const* k_slabs = nullptr;
  size_t v_offset_bytes = 0;
  int block_size = 0;
  int n_kv_heads = 0;
  int head_dim = 0;
  KvDtype dtype = KvDtype::kF32;
};

// out (n_heads, head_dim) = softmax(q·Kᵀ / sqrt(head_dim)) · V over positions [0, n_ctx), with
// query head h reading kv head h / (n_heads / n_kv_heads) (grouped-query attention).
// q is (n_heads, head_dim). scores must hold n_ctx floats. Single-threaded; callers parallelise
// over tokens and heads with head_begin/head_end.
void PagedAttention(const float* q, int n_heads, const PagedKvLayer& kv, int64_t n_ctx,
                    int head_begin, int head_end, float* scores, float* out);

// The same with a chosen kernel variant (the one above uses DetectBestIsa()). The result depends
// only on isa (scalar or SIMD), not on head_begin/head_end or the caller's threads.
void PagedAttention(const float* q, int n_heads, const PagedKvLayer& kv, int64_t n_ctx,
                    int head_begin, int head_end, float* scores, float* out, Isa isa);

// Writes one position's key and value (each (n_kv_heads, head_dim) f32) into the block slab,
// converting to kv.dtype.
void StoreKv(const float* k, const float* v, int64_t position, const PagedKvLayer& kv,
             uint8_t* const* k_slabs_mutable);

}  // namespace pdserve::kernels
