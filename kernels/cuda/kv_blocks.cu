#include "kernels/cuda/kv_blocks.h"

#include <type_traits>

#include "kernels/cuda/cuda_util.cuh"

namespace pdserve::kernels::gpu {
namespace {

using detail::FromFloat;
using detail::ToFloat;

// grid: (n_tokens); each thread block writes one token's K and V rows.
template <typename InT, typename KvT>
__global__ void StoreKvKernel(const InT* k, const InT* v, int64_t k_stride, int64_t v_stride,
                              const int64_t* slots, PagedKvView kv) {
  const int t = blockIdx.x;
  const int64_t slot = slots[t];
  if (slot < 0) return;
  const int64_t block = slot / kv.block_size;
  if (block >= kv.n_blocks) return;
  const int in_block = static_cast<int>(slot - block * kv.block_size);
  const int row = kv.n_kv_heads * kv.head_dim;
  uint8_t* base = kv.pool + block * kv.block_bytes;
  const size_t row_offset = static_cast<size_t>(in_block) * row * sizeof(KvT);
  KvT* k_dst = reinterpret_cast<KvT*>(base + kv.k_offset_bytes + row_offset);
  KvT* v_dst = reinterpret_cast<KvT*>(base + kv.v_offset_bytes + row_offset);
  const InT* k_src = k + t * k_stride;
  const InT* v_src = v + t * v_stride;
  for (int i = threadIdx.x; i < row; i += blockDim.x) {
    k_dst[i] = FromFloat<KvT>(ToFloat(k_src[i]));
    v_dst[i] = FromFloat<KvT>(ToFloat(v_src[i]));
  }
}

template <typename InT>
void LaunchStoreKv(const void* k, const void* v, int64_t k_stride, int64_t v_stride, int n_tokens,
                   const int64_t* slots, const PagedKvView& kv, cudaStream_t stream) {
  const int threads = 128;
  const auto* kk = static_cast<const InT*>(k);
  const auto* vv = static_cast<const InT*>(v);
  switch (kv.dtype) {
    case KvDtype::kF32:
      PDSERVE_LAUNCH(n_tokens, threads, 0, stream, StoreKvKernel<InT, float>)(
          kk, vv, k_stride, v_stride, slots, kv);
      break;
    case KvDtype::kF16:
      PDSERVE_LAUNCH(n_tokens, threads, 0, stream, StoreKvKernel<InT, __half>)(
          kk, vv, k_stride, v_stride, slots, kv);
      break;
    case KvDtype::kBF16:
      PDSERVE_LAUNCH(n_tokens, threads, 0, stream, StoreKvKernel<InT, __nv_bfloat16>)(
          kk, vv, k_stride, v_stride, slots, kv);
      break;
  }
}

// grid: (chunks, n_ids). Copies bytes [range_offset, range_offset + range_bytes) of pool block
// block_ids[i] to/from staging block i (range_bytes long), kVec bytes at a time; kVec divides the
// sizes, offsets and pointers' alignment.
template <int kVec, bool kGather>
__global__ void CopyBlocksKernel(const uint8_t* src_base, uint8_t* dst_base, int64_t n_pool_blocks,
                                 size_t block_bytes, size_t range_offset, size_t range_bytes,
                                 const int32_t* block_ids) {
  const int i = blockIdx.y;
  const int32_t id = block_ids[i];
  if (id < 0 || id >= n_pool_blocks) return;
  const size_t pool_off = static_cast<size_t>(id) * block_bytes + range_offset;
  const size_t staging_off = static_cast<size_t>(i) * range_bytes;
  const uint8_t* src = src_base + (kGather ? pool_off : staging_off);
  uint8_t* dst = dst_base + (kGather ? staging_off : pool_off);
  using Vec = typename std::conditional<kVec == 16, uint4, uint8_t>::type;
  const size_t n = range_bytes / kVec;
  const Vec* s = reinterpret_cast<const Vec*>(src);
  Vec* d = reinterpret_cast<Vec*>(dst);
  for (size_t j = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; j < n;
       j += static_cast<size_t>(gridDim.x) * blockDim.x) {
    d[j] = s[j];
  }
}

template <bool kGather>
cudaError_t CopyBlocks(const uint8_t* src, uint8_t* dst, int64_t n_pool_blocks, size_t block_bytes,
                       const BlockByteRange& range, const int32_t* block_ids, int n_ids,
                       cudaStream_t stream) {
  PDSERVE_GPU_REQUIRE(block_bytes > 0, "gather/scatter_blocks: block_bytes must be > 0");
  const size_t range_bytes = range.bytes == 0 ? block_bytes - range.offset : range.bytes;
  PDSERVE_GPU_REQUIRE(range.offset < block_bytes && range_bytes > 0 &&
                          range_bytes <= block_bytes - range.offset,
                      "gather/scatter_blocks: byte range outside the block");
  PDSERVE_GPU_REQUIRE(n_pool_blocks >= 0, "gather/scatter_blocks: n_pool_blocks must be >= 0");
  PDSERVE_GPU_REQUIRE(n_ids >= 0 && n_ids <= 65535,
                      "gather/scatter_blocks: n_ids must be in [0, 65535] (split larger lists)");
  if (n_ids == 0) return cudaSuccess;
  PDSERVE_GPU_REQUIRE(src != nullptr && dst != nullptr && block_ids != nullptr,
                      "gather/scatter_blocks: null pointer");
  constexpr int kThreads = 256;
  const bool vec16 = block_bytes % 16 == 0 && range.offset % 16 == 0 && range_bytes % 16 == 0 &&
                     detail::Aligned(src, 16) && detail::Aligned(dst, 16);
  const size_t n_vec = vec16 ? range_bytes / 16 : range_bytes;
  // Up to 32 thread blocks per pool block, so that a few big blocks still fill the GPU.
  const unsigned chunks = detail::GridFor(static_cast<int64_t>(n_vec), kThreads, 32);
  const dim3 grid(chunks, static_cast<unsigned>(n_ids));
  if (vec16) {
    PDSERVE_LAUNCH(grid, kThreads, 0, stream, CopyBlocksKernel<16, kGather>)(
        src, dst, n_pool_blocks, block_bytes, range.offset, range_bytes, block_ids);
  } else {
    PDSERVE_LAUNCH(grid, kThreads, 0, stream, CopyBlocksKernel<1, kGather>)(
        src, dst, n_pool_blocks, block_bytes, range.offset, range_bytes, block_ids);
  }
  return detail::LaunchStatus();
}

}  // namespace

cudaError_t StoreKv(const void* k, const void* v, ActDtype in_dtype, int64_t k_row_stride,
                    int64_t v_row_stride, int n_tokens, const int64_t* slots,
                    const PagedKvView& kv, cudaStream_t stream) {
  PDSERVE_GPU_REQUIRE(kv.block_size > 0 && kv.n_kv_heads > 0 && kv.head_dim > 0,
                      "store_kv: block_size, n_kv_heads and head_dim must be > 0");
  PDSERVE_GPU_REQUIRE(kv.dtype == KvDtype::kF32 || kv.dtype == KvDtype::kF16 ||
                          kv.dtype == KvDtype::kBF16,
                      "store_kv: unknown KV dtype");
  PDSERVE_GPU_REQUIRE(in_dtype == ActDtype::kF32 || in_dtype == ActDtype::kBF16,
                      "store_kv: input dtype must be f32 or bf16");
  const int64_t row = static_cast<int64_t>(kv.n_kv_heads) * kv.head_dim;
  PDSERVE_GPU_REQUIRE(k_row_stride >= row && v_row_stride >= row,
                      "store_kv: row strides must be >= n_kv_heads * head_dim");
  PDSERVE_GPU_REQUIRE(n_tokens >= 0, "store_kv: n_tokens must be >= 0");
  if (n_tokens == 0) return cudaSuccess;
  PDSERVE_GPU_REQUIRE(k != nullptr && v != nullptr && slots != nullptr && kv.pool != nullptr,
                      "store_kv: null pointer");
  if (in_dtype == ActDtype::kF32) {
    LaunchStoreKv<float>(k, v, k_row_stride, v_row_stride, n_tokens, slots, kv, stream);
  } else {
    LaunchStoreKv<__nv_bfloat16>(k, v, k_row_stride, v_row_stride, n_tokens, slots, kv, stream);
  }
  return detail::LaunchStatus();
}

cudaError_t GatherBlocks(const uint8_t* pool, int64_t n_pool_blocks, size_t block_bytes,
                         const int32_t* block_ids, int n_ids, uint8_t* staging,
                         cudaStream_t stream, BlockByteRange range) {
  return CopyBlocks<true>(pool, staging, n_pool_blocks, block_bytes, range, block_ids, n_ids,
                          stream);
}

cudaError_t ScatterBlocks(const uint8_t* staging, int64_t n_pool_blocks, size_t block_bytes,
                          const int32_t* block_ids, int n_ids, uint8_t* pool,
                          cudaStream_t stream, BlockByteRange range) {
  return CopyBlocks<false>(staging, pool, n_pool_blocks, block_bytes, range, block_ids, n_ids,
                           stream);
}

}  // namespace pdserve::kernels::gpu
