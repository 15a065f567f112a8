// Paged-attention decode, flash-decoding style. Thread block (split, kv head [, head chunk], seq):
//   1. stage the split's block ids in shared memory;
//   2. scores: each K row of the split is read once (8 elements per thread, a row spread over
//      `tpr` threads) and dotted with the G query heads that share the kv head;
//   3. softmax of the split's scores per head (max, exp, sum), in shared memory;
//   4. values: each V row read once, accumulated for the G heads;
//   5. partial sums reduced over the block, written as (acc, max, sum) per split, or as the
//      final output when the context fits one split.
// A second kernel combines the splits (log-sum-exp weights).

#include <algorithm>
#include <cmath>

#include "kernels/cuda/cuda_util.cuh"
#include "kernels/cuda/kv_load.cuh"
#include "kernels/cuda/paged_attention.h"
#include "kernels/cuda/paged_kv_checks.h"

namespace pdserve::kernels::gpu {
namespace {

using detail::Load8;
using detail::Raw8;
using detail::Widen8;

constexpr int kThreads = 128;
constexpr int kWarps = kThreads / 32;
constexpr int kUnroll = 4;  // K/V rows in flight per thread

struct DecodeParams {
  const __nv_bfloat16* q;
  int64_t q_stride;
  __nv_bfloat16* out;
  int64_t out_stride;
  const int32_t* block_tables;
  int64_t table_stride;
  const int32_t* ctx_lens;
  PagedKvView kv;
  int n_heads;
  int group;          // query heads per kv head
  int n_head_chunks;  // ceil(group / G)
  int64_t max_ctx;
  float scale;
  int split_tokens;
  int n_splits;
  int tpr_log2;       // threads per K/V row = 1 << tpr_log2 (8 elements each)
  int block_log2;     // log2(block_size) when a power of two, else -1
  float* part_acc;    // (n_seqs, n_heads, n_splits, head_dim)
  float* part_ml;     // (n_seqs, n_heads, n_splits, 2): max, sum
};

__device__ __forceinline__ int64_t ClampedCtx(const DecodeParams& p, int seq) {
  const int64_t ctx = p.ctx_lens[seq];
  return ctx < 0 ? 0 : (ctx > p.max_ctx ? p.max_ctx : ctx);
}

// Dynamic shared memory of one thread block, in floats/ints (see the kernel's layout).
__host__ __device__ inline int ScoreFloats(int g, int split_tokens, int head_dim) {
  const int scores = g * split_tokens;
  const int reduce = kWarps * g * head_dim;
  return scores > reduce ? scores : reduce;
}
__host__ __device__ inline int MaxIds(int split_tokens, int block_size) {
  return (split_tokens + block_size - 1) / block_size + 1;
}

template <typename KvT, int G>
__global__ void __launch_bounds__(kThreads) DecodeSplitKernel(DecodeParams p) {
  PDSERVE_DYNAMIC_SMEM(smem);
  const int seq = blockIdx.z;
  const int kvh = blockIdx.y / p.n_head_chunks;
  const int chunk = blockIdx.y - kvh * p.n_head_chunks;
  const int split = blockIdx.x;
  const int head0 = kvh * p.group + chunk * G;
  const int n_h = min(G, p.group - chunk * G);
  const int hd = p.kv.head_dim;
  const int64_t ctx = ClampedCtx(p, seq);
  const int64_t t0 = static_cast<int64_t>(split) * p.split_tokens;
  const int64_t t1 = min(t0 + p.split_tokens, ctx);
  if (t0 >= t1) {
    if (p.n_splits == 1) {  // empty context: zeros
      for (int i = threadIdx.x; i < n_h * hd; i += kThreads) {
        p.out[seq * p.out_stride + static_cast<int64_t>(head0) * hd + i] = __float2bfloat16_rn(0.f);
      }
    }
    return;  // the combine pass only reads splits that hold positions
  }
  const int n = static_cast<int>(t1 - t0);

  // Shared memory: scores[G][split_tokens] (reused as reduce[kWarps][G][hd] at the end),
  // stats[2][G] (max, sum), ids[MaxIds].
  float* scores = reinterpret_cast<float*>(smem);
  float* stats = scores + ScoreFloats(G, p.split_tokens, hd);
  int* ids = reinterpret_cast<int*>(stats + 2 * G);

  const int bs = p.kv.block_size;
  const int64_t first_block = t0 / bs;
  const int n_ids = static_cast<int>((t1 - 1) / bs - first_block + 1);
  for (int i = threadIdx.x; i < n_ids; i += kThreads) {
    const int32_t id = p.block_tables[seq * p.table_stride + first_block + i];
    ids[i] = (id >= 0 && id < p.kv.n_blocks) ? id : -1;
  }

  const int tpr = 1 << p.tpr_log2;
  const int lane_in_row = threadIdx.x & (tpr - 1);
  const int row = threadIdx.x >> p.tpr_log2;
  const int rows_per_pass = kThreads >> p.tpr_log2;
  const int d0 = lane_in_row * 8;
  const bool active = d0 < hd;

  float qf[G][8];
#pragma unroll
  for (int h = 0; h < G; ++h) {
#pragma unroll
    for (int j = 0; j < 8; ++j) qf[h][j] = 0.0f;
    if (active && h < n_h) {
      Raw8<__nv_bfloat16> raw;
      Load8(p.q + seq * p.q_stride + static_cast<int64_t>(head0 + h) * hd + d0, raw);
      Widen8(raw, qf[h]);
#pragma unroll
      for (int j = 0; j < 8; ++j) qf[h][j] *= p.scale;
    }
  }
  __syncthreads();  // ids

  const size_t token_bytes = static_cast<size_t>(p.kv.n_kv_heads) * hd * sizeof(KvT);
  const size_t head_bytes = (static_cast<size_t>(kvh) * hd + d0) * sizeof(KvT);
  // Address of this thread's 8 elements of position t0 + t in the slab at slab_offset, or null
  // when the block id is invalid.
  auto row_ptr = [&](int t, size_t slab_offset) -> const KvT* {
    const int64_t pos = t0 + t;
    const int64_t block = p.block_log2 >= 0 ? (pos >> p.block_log2) : pos / bs;
    const int in_block = static_cast<int>(pos - block * bs);
    const int id = ids[block - first_block];
    if (id < 0) return nullptr;
    return reinterpret_cast<const KvT*>(p.kv.pool + static_cast<size_t>(id) * p.kv.block_bytes +
                                        slab_offset + in_block * token_bytes + head_bytes);
  };

  // Scores.
  for (int base = 0; base < n; base += rows_per_pass * kUnroll) {
    Raw8<KvT> raw[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      detail::Zero8(raw[u]);
      const int t = base + u * rows_per_pass + row;
      if (active && t < n) {
        const KvT* ptr = row_ptr(t, p.kv.k_offset_bytes);
        if (ptr != nullptr) Load8(ptr, raw[u]);
      }
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      float kf[8];
      Widen8(raw[u], kf);
      float dot[G];
#pragma unroll
      for (int h = 0; h < G; ++h) {
        dot[h] = 0.0f;
#pragma unroll
        for (int j = 0; j < 8; ++j) dot[h] = fmaf(qf[h][j], kf[j], dot[h]);
      }
      for (int offset = tpr >> 1; offset > 0; offset >>= 1) {
#pragma unroll
        for (int h = 0; h < G; ++h) dot[h] += __shfl_xor_sync(0xffffffffu, dot[h], offset);
      }
      const int t = base + u * rows_per_pass + row;
      if (lane_in_row == 0 && t < n) {
#pragma unroll
        for (int h = 0; h < G; ++h) {
          if (h < n_h) scores[h * p.split_tokens + t] = dot[h];
        }
      }
    }
  }
  __syncthreads();

  // Softmax over the split, one warp per head.
  const int warp = threadIdx.x >> 5;
  const int lane = threadIdx.x & 31;
  for (int h = warp; h < n_h; h += kWarps) {
    float* s = scores + h * p.split_tokens;
    float m = -INFINITY;
    for (int t = lane; t < n; t += 32) m = fmaxf(m, s[t]);
    m = detail::WarpMax(m);
    float l = 0.0f;
    for (int t = lane; t < n; t += 32) {
      const float e = expf(s[t] - m);
      s[t] = e;
      l += e;
    }
    l = detail::WarpSum(l);
    if (lane == 0) {
      stats[h] = m;
      stats[G + h] = l;
    }
  }
  __syncthreads();

  // Values.
  float acc[G][8];
#pragma unroll
  for (int h = 0; h < G; ++h) {
#pragma unroll
    for (int j = 0; j < 8; ++j) acc[h][j] = 0.0f;
  }
  for (int base = 0; base < n; base += rows_per_pass * kUnroll) {
    Raw8<KvT> raw[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      detail::Zero8(raw[u]);
      const int t = base + u * rows_per_pass + row;
      if (active && t < n) {
        const KvT* ptr = row_ptr(t, p.kv.v_offset_bytes);
        if (ptr != nullptr) Load8(ptr, raw[u]);
      }
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int t = base + u * rows_per_pass + row;
      if (t < n) {
        float vf[8];
        Widen8(raw[u], vf);
#pragma unroll
        for (int h = 0; h < G; ++h) {
          const float pr = h < n_h ? scores[h * p.split_tokens + t] : 0.0f;
#pragma unroll
          for (int j = 0; j < 8; ++j) acc[h][j] = fmaf(pr, vf[j], acc[h][j]);
        }
      }
    }
  }
  // Reduce over the rows of a warp (lanes that differ above the row's own lanes).
  for (int offset = tpr; offset < 32; offset <<= 1) {
#pragma unroll
    for (int h = 0; h < G; ++h) {
#pragma unroll
      for (int j = 0; j < 8; ++j) acc[h][j] += __shfl_xor_sync(0xffffffffu, acc[h][j], offset);
    }
  }
  __syncthreads();  // scores are read; their space becomes reduce[kWarps][G][hd]
  float* reduce = scores;
  if (lane < tpr && active) {
#pragma unroll
    for (int h = 0; h < G; ++h) {
      if (h < n_h) {
#pragma unroll
        for (int j = 0; j < 8; ++j) reduce[(warp * G + h) * hd + d0 + j] = acc[h][j];
      }
    }
  }
  __syncthreads();
  for (int i = threadIdx.x; i < n_h * hd; i += kThreads) {
    const int h = i / hd;
    const int d = i - h * hd;
    float sum = 0.0f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) sum += reduce[(w * G + h) * hd + d];
    const int head = head0 + h;
    if (p.n_splits == 1) {
      p.out[seq * p.out_stride + static_cast<int64_t>(head) * hd + d] =
          __float2bfloat16_rn(sum / stats[G + h]);
    } else {
      const int64_t part = (static_cast<int64_t>(seq) * p.n_heads + head) * p.n_splits + split;
      p.part_acc[part * hd + d] = sum;
      if (d == 0) {
        p.part_ml[part * 2] = stats[h];
        p.part_ml[part * 2 + 1] = stats[G + h];
      }
    }
  }
}

// grid: (n_heads, n_seqs); one thread per output element of the head.
__global__ void DecodeCombineKernel(DecodeParams p) {
  const int head = blockIdx.x;
  const int seq = blockIdx.y;
  const int hd = p.kv.head_dim;
  const int64_t ctx = ClampedCtx(p, seq);
  const int n_valid = static_cast<int>((ctx + p.split_tokens - 1) / p.split_tokens);
  const int64_t part0 = (static_cast<int64_t>(seq) * p.n_heads + head) * p.n_splits;
  float m = -INFINITY;
  for (int s = 0; s < n_valid; ++s) m = fmaxf(m, p.part_ml[(part0 + s) * 2]);
  for (int d = threadIdx.x; d < hd; d += blockDim.x) {
    float l = 0.0f;
    float o = 0.0f;
    for (int s = 0; s < n_valid; ++s) {
      const float w = expf(p.part_ml[(part0 + s) * 2] - m);
      l = fmaf(p.part_ml[(part0 + s) * 2 + 1], w, l);
      o = fmaf(p.part_acc[(part0 + s) * hd + d], w, o);
    }
    p.out[seq * p.out_stride + static_cast<int64_t>(head) * hd + d] =
        __float2bfloat16_rn(n_valid > 0 ? o / l : 0.0f);
  }
}

int GroupTile(int group) { return group == 1 ? 1 : (group <= 4 ? 4 : 8); }

int Log2IfPow2(int x) {
  if (x <= 0 || (x & (x - 1)) != 0) return -1;
  int l = 0;
  while ((1 << l) < x) ++l;
  return l;
}

template <typename KvT, int G>
cudaError_t LaunchSplit(const DecodeParams& p, dim3 grid, cudaStream_t stream) {
  const size_t smem =
      (static_cast<size_t>(ScoreFloats(G, p.split_tokens, p.kv.head_dim)) + 2 * G) *
          sizeof(float) +
      static_cast<size_t>(MaxIds(p.split_tokens, p.kv.block_size)) * sizeof(int);
  if (smem > 48 * 1024) {
    const cudaError_t err = cudaFuncSetAttribute(
        reinterpret_cast<const void*>(&DecodeSplitKernel<KvT, G>),
        cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
    if (err != cudaSuccess) return err;
  }
  PDSERVE_LAUNCH(grid, kThreads, smem, stream, DecodeSplitKernel<KvT, G>)(p);
  return detail::LaunchStatus();
}

template <typename KvT>
cudaError_t LaunchSplitFor(int g_tile, const DecodeParams& p, dim3 grid, cudaStream_t stream) {
  switch (g_tile) {
    case 1: return LaunchSplit<KvT, 1>(p, grid, stream);
    case 4: return LaunchSplit<KvT, 4>(p, grid, stream);
    default: return LaunchSplit<KvT, 8>(p, grid, stream);
  }
}

}  // namespace

PagedDecodePlan PlanPagedAttentionDecode(const PagedDecodeShape& shape, int n_multiprocessors,
                                         int split_tokens) {
  PagedDecodePlan plan;
  const int64_t max_ctx = std::max<int64_t>(shape.max_ctx, 1);
  int64_t st = 0;
  if (split_tokens > 0) {
    st = std::min(split_tokens, kMaxDecodeSplitTokens);
  } else {
    const int sms = n_multiprocessors > 0 ? n_multiprocessors : 132;
    const int group = shape.n_kv_heads > 0 ? std::max(1, shape.n_heads / shape.n_kv_heads) : 1;
    const int g_tile = GroupTile(group);
    const int64_t blocks_per_split = std::max<int64_t>(
        1, static_cast<int64_t>(std::max(shape.n_seqs, 1)) * std::max(shape.n_kv_heads, 1) *
               ((group + g_tile - 1) / g_tile));
    // About four thread blocks per SM keep enough loads in flight; a split shorter than 128
    // positions costs more in its combine than it gains.
    const int64_t want_splits = std::max<int64_t>(1, (4LL * sms + blocks_per_split - 1) /
                                                         blocks_per_split);
    st = (max_ctx + want_splits - 1) / want_splits;
    st = (st + 63) / 64 * 64;
    st = std::clamp<int64_t>(st, 128, kMaxDecodeSplitTokens);
  }
  plan.split_tokens = static_cast<int>(st);
  plan.n_splits = static_cast<int>((max_ctx + st - 1) / st);
  if (plan.n_splits > 1) {
    const size_t parts = static_cast<size_t>(std::max(shape.n_seqs, 0)) *
                         static_cast<size_t>(std::max(shape.n_heads, 0)) *
                         static_cast<size_t>(plan.n_splits);
    const size_t acc_bytes = parts * static_cast<size_t>(std::max(shape.head_dim, 0)) * 4;
    plan.workspace_bytes = (acc_bytes + 15) / 16 * 16 + parts * 2 * 4;
  }
  return plan;
}

cudaError_t PagedAttentionDecode(const __nv_bfloat16* q, int64_t q_row_stride,
                                 const PagedDecodeShape& shape, const PagedKvView& kv,
                                 const int32_t* block_tables, int64_t block_table_stride,
                                 const int32_t* ctx_lens, float scale,
                                 const PagedDecodePlan& plan, void* workspace,
                                 size_t workspace_bytes, __nv_bfloat16* out,
                                 int64_t out_row_stride, cudaStream_t stream) {
  if (cudaError_t err = detail::CheckAttentionKv(kv, shape.n_heads); err != cudaSuccess) {
    return err;
  }
  PDSERVE_GPU_REQUIRE(shape.n_kv_heads == kv.n_kv_heads && shape.head_dim == kv.head_dim,
                      "paged_attention_decode: shape and KV view disagree on heads/head_dim");
  PDSERVE_GPU_REQUIRE(shape.n_seqs >= 0 && shape.n_seqs <= 65535,
                      "paged_attention_decode: n_seqs must be in [0, 65535]");
  PDSERVE_GPU_REQUIRE(shape.max_ctx >= 0, "paged_attention_decode: max_ctx must be >= 0");
  if (shape.n_seqs == 0) return cudaSuccess;
  PDSERVE_GPU_REQUIRE(q != nullptr && out != nullptr && block_tables != nullptr &&
                          ctx_lens != nullptr,
                      "paged_attention_decode: null pointer");
  const int64_t row = static_cast<int64_t>(shape.n_heads) * shape.head_dim;
  PDSERVE_GPU_REQUIRE(q_row_stride >= row && out_row_stride >= row,
                      "paged_attention_decode: row strides must be >= n_heads * head_dim");
  PDSERVE_GPU_REQUIRE(detail::Aligned(q, 16) && q_row_stride % 8 == 0,
                      "paged_attention_decode: q must be 16-byte aligned with a row stride "
                      "that is a multiple of 8");
  const int64_t max_blocks = (shape.max_ctx + kv.block_size - 1) / kv.block_size;
  PDSERVE_GPU_REQUIRE(block_table_stride >= max_blocks,
                      "paged_attention_decode: block_table_stride < ceil(max_ctx / block_size)");
  const PagedDecodePlan expected = PlanPagedAttentionDecode(shape, 0, plan.split_tokens);
  PDSERVE_GPU_REQUIRE(plan.split_tokens > 0 && plan.split_tokens <= kMaxDecodeSplitTokens &&
                          plan.n_splits == expected.n_splits,
                      "paged_attention_decode: plan does not match the shape");
  PDSERVE_GPU_REQUIRE(plan.n_splits == 1 ||
                          (workspace != nullptr && workspace_bytes >= expected.workspace_bytes &&
                           detail::Aligned(workspace, 16)),
                      "paged_attention_decode: workspace missing, too small or not aligned");

  DecodeParams p{};
  p.q = q;
  p.q_stride = q_row_stride;
  p.out = out;
  p.out_stride = out_row_stride;
  p.block_tables = block_tables;
  p.table_stride = block_table_stride;
  p.ctx_lens = ctx_lens;
  p.kv = kv;
  p.n_heads = shape.n_heads;
  p.group = shape.n_heads / kv.n_kv_heads;
  const int g_tile = GroupTile(p.group);
  p.n_head_chunks = (p.group + g_tile - 1) / g_tile;
  p.max_ctx = shape.max_ctx;
  p.scale = scale;
  p.split_tokens = plan.split_tokens;
  p.n_splits = plan.n_splits;
  int tpr = 1;
  while (tpr * 8 < kv.head_dim) tpr *= 2;
  p.tpr_log2 = Log2IfPow2(tpr);
  p.block_log2 = Log2IfPow2(kv.block_size);
  if (plan.n_splits > 1) {
    const size_t parts = static_cast<size_t>(shape.n_seqs) * shape.n_heads * plan.n_splits;
    const size_t acc_bytes = (parts * kv.head_dim * 4 + 15) / 16 * 16;
    p.part_acc = static_cast<float*>(workspace);
    p.part_ml = reinterpret_cast<float*>(static_cast<uint8_t*>(workspace) + acc_bytes);
  }
  PDSERVE_GPU_REQUIRE(static_cast<int64_t>(kv.n_kv_heads) * p.n_head_chunks <= 65535,
                      "paged_attention_decode: too many kv heads");

  const dim3 grid(static_cast<unsigned>(plan.n_splits),
                  static_cast<unsigned>(kv.n_kv_heads * p.n_head_chunks),
                  static_cast<unsigned>(shape.n_seqs));
  cudaError_t err = cudaSuccess;
  switch (kv.dtype) {
    case KvDtype::kF32: err = LaunchSplitFor<float>(g_tile, p, grid, stream); break;
    case KvDtype::kF16: err = LaunchSplitFor<__half>(g_tile, p, grid, stream); break;
    case KvDtype::kBF16: err = LaunchSplitFor<__nv_bfloat16>(g_tile, p, grid, stream); break;
  }
  if (err != cudaSuccess || plan.n_splits == 1) return err;
  const int threads = std::min(256, (kv.head_dim + 31) / 32 * 32);
  const dim3 combine_grid(static_cast<unsigned>(shape.n_heads),
                          static_cast<unsigned>(shape.n_seqs));
  PDSERVE_LAUNCH(combine_grid, threads, 0, stream, DecodeCombineKernel)(p);
  return detail::LaunchStatus();
}

}  // namespace pdserve::kernels::gpu
