#pragma once
// Moving K/V in and out of the block pool on the device: storing new tokens' keys and values
// (after the QKV projection and RoPE), and copying whole blocks between the pool and a
// contiguous staging buffer (the unit of transfer between prefill and decode nodes).

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "kernels/cuda/paged_kv.h"
#include "kernels/cuda/status.h"

namespace pdserve::kernels::gpu {

// Writes the key and value of n_tokens tokens into the pool, converting to kv.dtype (round to
// nearest even). Token t's key is (n_kv_heads, head_dim) at k + t * k_row_stride elements (and
// its value likewise); it goes to position slots[t] % block_size of block slots[t] / block_size.
// slots is (n_tokens) int64 on the device; a token whose block is outside [0, kv.n_blocks) (or
// whose slot is negative) is skipped. Tokens must not share a slot.
cudaError_t StoreKv(const void* k, const void* v, ActDtype in_dtype, int64_t k_row_stride,
                    int64_t v_row_stride, int n_tokens, const int64_t* slots,
                    const PagedKvView& kv, cudaStream_t stream);

// The bytes of each block that a gather/scatter moves: [offset, offset + bytes), bytes == 0
// meaning "to the end of the block". The default is the whole block; one layer's K and V slabs
// (layer-wise streaming) are {KvLayout::KSlabOffset(l), 2 * KvLayout::SlabBytes()}.
struct BlockByteRange {
  size_t offset = 0;
  size_t bytes = 0;
};

// With R the range's length: staging[i * R, (i + 1) * R) = the range of block block_ids[i] of the
// pool, for i in [0, n_ids). block_ids is device memory; an id outside [0, n_pool_blocks)
// leaves its staging slot untouched. staging must not overlap the pool. 16-byte aligned sizes
// and pointers copy 16 bytes at a time, anything else byte by byte.
cudaError_t GatherBlocks(const uint8_t* pool, int64_t n_pool_blocks, size_t block_bytes,
                         const int32_t* block_ids, int n_ids, uint8_t* staging,
                         cudaStream_t stream, BlockByteRange range = {});

// The inverse: the range of block block_ids[i] of the pool = staging slot i. Ids must be
// distinct; an id outside [0, n_pool_blocks) is skipped.
cudaError_t ScatterBlocks(const uint8_t* staging, int64_t n_pool_blocks, size_t block_bytes,
                          const int32_t* block_ids, int n_ids, uint8_t* pool,
                          cudaStream_t stream, BlockByteRange range = {});

}  // namespace pdserve::kernels::gpu
