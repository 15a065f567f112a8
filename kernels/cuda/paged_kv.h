#pragma once
// The device view of one layer of the KV block pool, in the layout of docs/kv-layout.md
// (common/kv/kv_layout.h): block[layer][K, V][token in block][kv_head][head_dim], densely packed,
// one allocation of n_blocks blocks. The kernels know nothing else of the pool.

#include <cstddef>
#include <cstdint>

#include "kernels/cpu/paged_attention.h"  // KvDtype, shared with the CPU kernels

namespace pdserve::kernels::gpu {

struct PagedKvView {
  uint8_t* pool = nullptr;    // device address of block 0; block b starts at pool + b * block_bytes
  int64_t n_blocks = 0;       // ids outside [0, n_blocks) are never dereferenced
  size_t block_bytes = 0;     // KvLayout::BlockBytes()
  size_t k_offset_bytes = 0;  // KvLayout::KSlabOffset(layer)
  size_t v_offset_bytes = 0;  // KvLayout::VSlabOffset(layer)
  int block_size = 0;         // token positions per block
  int n_kv_heads = 0;
  int head_dim = 0;
  KvDtype dtype = KvDtype::kBF16;
};

// The view of `layer` for the usual dense pool (what KvLayout computes, repeated here because
// kernels/ does not include common/).
inline PagedKvView MakePagedKvView(uint8_t* pool, int64_t n_blocks, int n_layers, int layer,
                                   int block_size, int n_kv_heads, int head_dim, KvDtype dtype) {
  const size_t elem = dtype == KvDtype::kF32 ? 4 : 2;
  const size_t slab = static_cast<size_t>(block_size) * static_cast<size_t>(n_kv_heads) *
                      static_cast<size_t>(head_dim) * elem;
  PagedKvView v;
  v.pool = pool;
  v.n_blocks = n_blocks;
  v.block_bytes = static_cast<size_t>(n_layers) * 2 * slab;
  v.k_offset_bytes = static_cast<size_t>(layer) * 2 * slab;
  v.v_offset_bytes = v.k_offset_bytes + slab;
  v.block_size = block_size;
  v.n_kv_heads = n_kv_heads;
  v.head_dim = head_dim;
  v.dtype = dtype;
  return v;
}

}  // namespace pdserve::kernels::gpu
