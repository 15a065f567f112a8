#pragma once
// Attention over the paged KV pool (kernels/cuda/paged_kv.h) on the device, with the math of
// kernels/cpu/paged_attention.h: out = softmax(scale · q·Kᵀ) · V, query head h reading kv head
// h / (n_heads / n_kv_heads) (grouped-query attention). q and out are both bf16 or both f32 (one
// overload each, same kernels: f32 q is read and f32 out written without rounding); K/V are f32,
// f16 or bf16 as the pool stores them; scores, softmax and sums are f32.
//
// Limits (checked): head_dim a multiple of 8 and at most 256; n_heads a multiple of n_kv_heads.

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "kernels/cuda/paged_kv.h"
#include "kernels/cuda/status.h"

namespace pdserve::kernels::gpu {

// ---- Decode: one query token per sequence, a batch of sequences ----------------------------
//
// The context of each sequence is cut into splits of split_tokens positions; one thread block
// reads one split of one kv head once, for all the query heads that share it (flash-decoding),
// and the last of a head's splits to finish combines their partial softmax sums (one launch).
// The plan depends on the shape and on the device's multiprocessor count, and says how much
// workspace the call needs.

struct PagedDecodeShape {
  int n_seqs = 0;
  int n_heads = 0;
  int n_kv_heads = 0;
  int head_dim = 0;
  int64_t max_ctx = 0;  // an upper bound of every ctx_lens[i]
};

struct PagedDecodePlan {
  int split_tokens = 0;        // positions per split
  int n_splits = 0;            // ceil(max_ctx / split_tokens), at least 1
  size_t workspace_bytes = 0;  // 0 when n_splits == 1 (no combine)
};

inline constexpr int kMaxDecodeSplitTokens = 1024;
// Most (sequence, kv head [, head chunk]) pairs one decode call may hold: the size of the
// workspace's counter region (4 bytes each).
inline constexpr int kMaxDecodeUnits = 65536;

// split_tokens > 0 forces the split length (clamped to [1, kMaxDecodeSplitTokens]); 0 chooses
// the shortest split (a multiple of 64, at least 64) whose thread blocks still fit in one wave
// on the device (n_multiprocessors; 0 = assume 132).
PagedDecodePlan PlanPagedAttentionDecode(const PagedDecodeShape& shape, int n_multiprocessors,
                                         int split_tokens = 0);

// For i in [0, n_seqs): out row i (n_heads, head_dim) = attention of q row i (n_heads, head_dim)
// over positions [0, ctx_lens[i]) of sequence i, whose position p is in block
// block_tables[i * block_table_stride + p / block_size].
// q row i starts at q + i * q_row_stride (a fused QKV row works), out row i at
// out + i * out_row_stride (strides in elements); q is 16-byte aligned and q_row_stride a
// multiple of 8, bf16 or f32 alike. block_tables and ctx_lens (int32) are device memory;
// ctx_lens[i] must be <= shape.max_ctx (larger values are clamped to it); ctx_lens[i] == 0 gives
// zeros. A block id outside [0, kv.n_blocks) reads as zeros. workspace: plan.workspace_bytes of
// device memory (may be null when that is 0), 16-byte aligned, ZEROED before its first use
// (cudaMemset once after allocation: its first 4 × kMaxDecodeUnits bytes hold counters that
// every call, of any shape, leaves at zero again); calls that share a workspace must not run
// concurrently. plan must come from PlanPagedAttentionDecode with this shape.
cudaError_t PagedAttentionDecode(const __nv_bfloat16* q, int64_t q_row_stride,
                                 const PagedDecodeShape& shape, const PagedKvView& kv,
                                 const int32_t* block_tables, int64_t block_table_stride,
                                 const int32_t* ctx_lens, float scale,
                                 const PagedDecodePlan& plan, void* workspace,
                                 size_t workspace_bytes, __nv_bfloat16* out,
                                 int64_t out_row_stride, cudaStream_t stream);
// The same with f32 q and out.
cudaError_t PagedAttentionDecode(const float* q, int64_t q_row_stride,
                                 const PagedDecodeShape& shape, const PagedKvView& kv,
                                 const int32_t* block_tables, int64_t block_table_stride,
                                 const int32_t* ctx_lens, float scale,
                                 const PagedDecodePlan& plan, void* workspace,
                                 size_t workspace_bytes, float* out, int64_t out_row_stride,
                                 cudaStream_t stream);

// ---- Prefill: a run of query tokens of one sequence, causal --------------------------------
//
// Query token i (i in [0, n_q)) is at position q_start + i and attends to positions
// [0, q_start + i] of the sequence in the pool (its own K/V must already be stored: StoreKv).
// q_start > 0 is a prompt continuing a cached prefix (prefix reuse, chunked prefill).
// Tiled with an online softmax: no n_q × n_ctx matrix is formed.
// q row i starts at q + i * q_row_stride, out row i at out + i * out_row_stride, each
// (n_heads, head_dim), strides in elements (no alignment needed beyond the element's).
// block_table (int32, device) covers positions [0, q_start + n_q).
cudaError_t PagedAttentionPrefill(const __nv_bfloat16* q, int64_t q_row_stride, int n_q,
                                  int64_t q_start, int n_heads, const PagedKvView& kv,
                                  const int32_t* block_table, float scale, __nv_bfloat16* out,
                                  int64_t out_row_stride, cudaStream_t stream);
// The same with f32 q and out.
cudaError_t PagedAttentionPrefill(const float* q, int64_t q_row_stride, int n_q, int64_t q_start,
                                  int n_heads, const PagedKvView& kv, const int32_t* block_table,
                                  float scale, float* out, int64_t out_row_stride,
                                  cudaStream_t stream);

}  // namespace pdserve::kernels::gpu
