// Paged-attention decode, flash-decoding style. One thread block per (split, kv head [, head
// chunk], seq) reads each K and V row of its split once, for the G query heads that share the
// kv head, in one pass:
//   - the byte offsets of the split's blocks are staged in shared memory;
//   - a K/V row (head_dim elements) is spread over `tpr` threads, 8 elements each (one 16-byte
//     load for f16/bf16), so a thread block covers R = kThreads / tpr rows per pass;
//   - each thread owns U rows per iteration and issues the 2U loads (K and V) of the next
//     iteration before it computes the current one (a register double buffer), so
//     2U × 16 bytes per thread stay in flight while it computes;
//   - each row group (the tpr threads of a row) keeps an online softmax per head (running max,
//     sum and weighted V sum), rescaled once per U rows; no scores go through shared memory;
//   - the row groups' partial sums are merged in shared memory and written as (acc, max, sum)
//     per split, or as the output when the context fits one split.
// The splits are combined with log-sum-exp weights by the last of a (seq, kv head [, chunk])'s
// thread blocks to finish (a counter per unit in the workspace, counted up with atomicAdd after a
// __threadfence and reset by that block), so a multi-split call is one launch: a second,
// combine kernel cost ~4 µs of launch gap and tail per call at batch 32 × 4K context (H100).
// Scores stay in the base-2 domain (q is scaled by scale · log2(e)), so each exponential is one
// ex2 instruction.
//
// The thread blocks of one split and sequence for the different kv heads have consecutive
// indices: they run at the same time and read the same K/V slabs (the kv heads of a position are
// adjacent in memory) together.

#include <algorithm>
#include <climits>
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
constexpr float kLog2e = 1.4426950408889634f;

// Thread blocks of the split kernel resident per SM, by registers (65536 per SM, 128 threads a
// block): <= 168 a thread for G <= 3 (the kernel's launch bounds; ptxas, sm_90, CUDA 13.0: 162
// for bf16/f16 with G = 3), else up to 255 (ptxas: 179 to 253 for G = 4, 6, 8). The planner
// sizes the grid to one wave of them, so that every block streams from the start and none waits
// in a second wave.
constexpr int kResidentBlocksPerSmSmallG = 3;
constexpr int ResidentBlocksPerSm(int g) { return g <= 3 ? kResidentBlocksPerSmSmallG : 2; }

// K (and V) rows a thread loads per iteration: 2 × U 16-byte loads in flight per buffer.
// Fewer for many heads per block (registers: q and the accumulators are G × 8 floats each) and
// for f32 K/V (two 16-byte loads per row slice).
template <typename KvT, int G>
constexpr int kRowsPerThread = (G <= 4 ? 4 : 2) / (sizeof(KvT) == 4 ? 2 : 1);

struct DecodeParams {
  detail::AttentionIo io;  // q and out, bf16 or f32
  int64_t q_stride;
  int64_t out_stride;
  const int32_t* block_tables;
  int64_t table_stride;
  const int32_t* ctx_lens;
  PagedKvView kv;
  int n_heads;
  int group;          // query heads per kv head
  int n_head_chunks;  // ceil(group / G)
  int n_units;        // n_kv_heads * n_head_chunks: thread blocks per (split, seq)
  int64_t max_ctx;
  float q_scale;      // scale · log2(e)
  int split_tokens;
  int n_splits;
  int tpr_log2;       // threads per K/V row = 1 << tpr_log2 (8 elements each)
  int token_bytes;    // n_kv_heads * head_dim * element size: positions' stride in a slab
  float* part_acc;    // (n_seqs, n_heads, n_splits, head_dim)
  float* part_ml;     // (n_seqs, n_heads, n_splits, 2): max (base 2), sum
  unsigned* arrived;  // (n_seqs, n_units): splits of the unit done so far; 0 between calls
};

// 2^x, flushing results below 2^-126 to zero (negligible softmax weights): one MUFU.EX2, where
// exp2f adds denormal handling around it. exp2(-inf) = 0.
__device__ __forceinline__ float Exp2(float x) {
#if defined(PDSERVE_CUDA_HOST_EMULATION)
  return exp2f(x);
#else
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
#endif
}

__device__ __forceinline__ int64_t ClampedCtx(const DecodeParams& p, int seq) {
  const int64_t ctx = p.ctx_lens[seq];
  return ctx < 0 ? 0 : (ctx > p.max_ctx ? p.max_ctx : ctx);
}

// Blocks a split of split_tokens positions can touch (it may start inside a block), rounded up
// to an even count so that what follows the offsets stays 16-byte aligned.
__host__ __device__ inline int MaxIds(int split_tokens, int block_size) {
  const int ids = (split_tokens + block_size - 1) / block_size + 1;
  return (ids + 1) / 2 * 2;
}

// Dynamic shared memory of a split block: offs[MaxIds] (int64 byte offsets of the split's
// blocks in the pool, -1 for an invalid id), then for the R row groups and G heads
// acc[R][G][head_dim], max[R][G], sum[R][G] (floats).
__host__ __device__ inline size_t SplitSmemBytes(int g, int split_tokens, int block_size,
                                                 int head_dim, int tpr_log2) {
  const size_t rows = static_cast<size_t>(kThreads >> tpr_log2);
  return static_cast<size_t>(MaxIds(split_tokens, block_size)) * sizeof(int64_t) +
         rows * static_cast<size_t>(g) * static_cast<size_t>(head_dim + 2) * sizeof(float);
}

template <typename KvT, int G>
__global__ void __launch_bounds__(kThreads, G <= 3 ? kResidentBlocksPerSmSmallG : 1)
    DecodeSplitKernel(DecodeParams p) {
  constexpr int U = kRowsPerThread<KvT, G>;
  PDSERVE_DYNAMIC_SMEM(smem);
  const int seq = blockIdx.y;
  const int split = static_cast<int>(blockIdx.x) / p.n_units;
  const int unit = static_cast<int>(blockIdx.x) - split * p.n_units;
  const int kvh = unit / p.n_head_chunks;
  const int chunk = unit - kvh * p.n_head_chunks;
  const int head0 = kvh * p.group + chunk * G;
  const int n_h = min(G, p.group - chunk * G);
  const int hd = p.kv.head_dim;
  const int64_t ctx = ClampedCtx(p, seq);
  const int64_t t0 = static_cast<int64_t>(split) * p.split_tokens;
  const int64_t t1 = min(t0 + p.split_tokens, ctx);
  if (t0 >= t1) {
    if (split == 0) {  // empty context (ctx == 0): zeros
      for (int i = threadIdx.x; i < n_h * hd; i += kThreads) {
        detail::StoreOut(p.io, seq * p.out_stride + static_cast<int64_t>(head0) * hd + i, 0.0f);
      }
    }
    return;  // the combine only reads, and only counts, splits that hold positions
  }
  const int n = static_cast<int>(t1 - t0);

  const int tpr = 1 << p.tpr_log2;
  const int rows = kThreads >> p.tpr_log2;  // row groups of the thread block
  const int lane_in_row = threadIdx.x & (tpr - 1);
  const int row = threadIdx.x >> p.tpr_log2;
  const int d0 = lane_in_row * 8;
  const bool active = d0 < hd;

  const int bs = p.kv.block_size;
  int64_t* offs = reinterpret_cast<int64_t*>(smem);
  float* merge_acc = reinterpret_cast<float*>(offs + MaxIds(p.split_tokens, bs));
  float* merge_max = merge_acc + rows * G * hd;
  float* merge_sum = merge_max + rows * G;

  // Positions are counted from the start of the split's first block: t0 is `lead` into it.
  const int64_t first_block = t0 / bs;
  const int lead = static_cast<int>(t0 - first_block * bs);
  const int n_ids = (lead + n - 1) / bs + 1;
  for (int i = threadIdx.x; i < n_ids; i += kThreads) {
    const int32_t id = p.block_tables[seq * p.table_stride + first_block + i];
    offs[i] = (id >= 0 && id < p.kv.n_blocks)
                  ? static_cast<int64_t>(id) * static_cast<int64_t>(p.kv.block_bytes)
                  : -1;
  }

  float qf[G][8];
#pragma unroll
  for (int h = 0; h < G; ++h) {
#pragma unroll
    for (int j = 0; j < 8; ++j) qf[h][j] = 0.0f;
    if (active && h < n_h) {
      detail::LoadQ8(p.io, seq * p.q_stride + static_cast<int64_t>(head0 + h) * hd + d0, qf[h]);
#pragma unroll
      for (int j = 0; j < 8; ++j) qf[h][j] *= p.q_scale;
    }
  }
  __syncthreads();  // offs

  // This thread's 8 elements of kv head kvh in the K slab of block 0; V is v_delta further.
  const uint8_t* k_base = p.kv.pool + p.kv.k_offset_bytes +
                          (static_cast<size_t>(kvh) * hd + d0) * sizeof(KvT);
  const int64_t v_delta =
      static_cast<int64_t>(p.kv.v_offset_bytes) - static_cast<int64_t>(p.kv.k_offset_bytes);
  const int token_bytes = p.token_bytes;
  const int step = rows * U;  // positions per iteration of the thread block

  // Row u of this thread is position lead + base + u * rows + row (from the start of the first
  // block): block blk[u] of the split, in_block[u] into it (in_bytes[u] bytes into the slab).
  // They advance by `step` positions per iteration without a division.
  const int step_blocks = step / bs;
  const int step_rest = step - step_blocks * bs;
  const int step_rest_bytes = step_rest * token_bytes;
  const int slab_bytes = bs * token_bytes;
  int blk[U];
  int in_block[U];
  int in_bytes[U];
#pragma unroll
  for (int u = 0; u < U; ++u) {
    const int pos = lead + u * rows + row;
    blk[u] = pos / bs;
    in_block[u] = pos - blk[u] * bs;
    in_bytes[u] = in_block[u] * token_bytes;
  }
  // Loads this thread's rows of the iteration at `base` and advances the positions; zeros past
  // the split, for an invalid block id and on the lanes past head_dim.
  auto load_rows = [&](int base, Raw8<KvT> (&kr)[U], Raw8<KvT> (&vr)[U]) {
#pragma unroll
    for (int u = 0; u < U; ++u) {
      detail::Zero8(kr[u]);
      detail::Zero8(vr[u]);
      if (active && base + u * rows + row < n) {
        const int64_t off = offs[blk[u]];
        if (off >= 0) {
          const uint8_t* kp = k_base + off + in_bytes[u];
          Load8(reinterpret_cast<const KvT*>(kp), kr[u]);
          Load8(reinterpret_cast<const KvT*>(kp + v_delta), vr[u]);
        }
      }
      blk[u] += step_blocks;
      in_block[u] += step_rest;
      in_bytes[u] += step_rest_bytes;
      if (in_block[u] >= bs) {
        ++blk[u];
        in_block[u] -= bs;
        in_bytes[u] -= slab_bytes;
      }
    }
  };

  float acc[G][8];
  float run_max[G];  // base-2 scores
  float run_sum[G];
#pragma unroll
  for (int h = 0; h < G; ++h) {
    run_max[h] = -INFINITY;
    run_sum[h] = 0.0f;
#pragma unroll
    for (int j = 0; j < 8; ++j) acc[h][j] = 0.0f;
  }

  // Folds the rows of the iteration at `base` (already loaded) into the running softmax.
  auto fold_rows = [&](int base, const Raw8<KvT> (&kr)[U], const Raw8<KvT> (&vr)[U]) {
    float s[U][G];
#pragma unroll
    for (int u = 0; u < U; ++u) {
      float kf[8];
      Widen8(kr[u], kf);
#pragma unroll
      for (int h = 0; h < G; ++h) {
        float dot = 0.0f;
#pragma unroll
        for (int j = 0; j < 8; ++j) dot = fmaf(qf[h][j], kf[j], dot);
        s[u][h] = dot;
      }
    }
    // Sum over the tpr lanes of the row (tpr <= 32; the test is uniform).
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) {
      if (offset < tpr) {
#pragma unroll
        for (int u = 0; u < U; ++u) {
#pragma unroll
          for (int h = 0; h < G; ++h) s[u][h] += __shfl_xor_sync(0xffffffffu, s[u][h], offset);
        }
      }
    }
    // Rows past the split score -inf and weigh 0.
#pragma unroll
    for (int u = 0; u < U; ++u) {
      if (base + u * rows + row >= n) {
#pragma unroll
        for (int h = 0; h < G; ++h) s[u][h] = -INFINITY;
      }
    }
    float pr[U][G];
#pragma unroll
    for (int h = 0; h < G; ++h) {
      float mx = run_max[h];
#pragma unroll
      for (int u = 0; u < U; ++u) mx = fmaxf(mx, s[u][h]);
      // mx is -inf only while this row group has seen no position; then every weight below is
      // exp2(-inf - 0) = 0 (and sum and acc are 0 already).
      const float ref = mx == -INFINITY ? 0.0f : mx;
      const float alpha = Exp2(run_max[h] - ref);
      run_max[h] = mx;
      float sum = run_sum[h] * alpha;
#pragma unroll
      for (int u = 0; u < U; ++u) {
        pr[u][h] = Exp2(s[u][h] - ref);
        sum += pr[u][h];
      }
      run_sum[h] = sum;
#pragma unroll
      for (int j = 0; j < 8; ++j) acc[h][j] *= alpha;
    }
#pragma unroll
    for (int u = 0; u < U; ++u) {
      float vf[8];
      Widen8(vr[u], vf);
#pragma unroll
      for (int h = 0; h < G; ++h) {
#pragma unroll
        for (int j = 0; j < 8; ++j) acc[h][j] = fmaf(pr[u][h], vf[j], acc[h][j]);
      }
    }
  };

  // Two register buffers in turn: the loads of the next iteration are in flight while the
  // current one is folded.
  Raw8<KvT> k_a[U];
  Raw8<KvT> v_a[U];
  Raw8<KvT> k_b[U];
  Raw8<KvT> v_b[U];
  load_rows(0, k_a, v_a);
  for (int base = 0; base < n; base += 2 * step) {
    load_rows(base + step, k_b, v_b);
    fold_rows(base, k_a, v_a);
    if (base + step >= n) break;
    load_rows(base + 2 * step, k_a, v_a);
    fold_rows(base + step, k_b, v_b);
  }

  // Merge the row groups: each wrote (max, sum, acc) per head; a row group that saw no
  // position has max -inf and weighs nothing.
  if (lane_in_row == 0) {
#pragma unroll
    for (int h = 0; h < G; ++h) {
      merge_max[row * G + h] = run_max[h];
      merge_sum[row * G + h] = run_sum[h];
    }
  }
  if (active) {
#pragma unroll
    for (int h = 0; h < G; ++h) {
#pragma unroll
      for (int j = 0; j < 8; ++j) merge_acc[(row * G + h) * hd + d0 + j] = acc[h][j];
    }
  }
  __syncthreads();
  for (int i = threadIdx.x; i < n_h * hd; i += kThreads) {
    const int h = i / hd;
    const int d = i - h * hd;
    float mx = -INFINITY;
    for (int r = 0; r < rows; ++r) mx = fmaxf(mx, merge_max[r * G + h]);
    float l = 0.0f;
    float o = 0.0f;
    for (int r = 0; r < rows; ++r) {
      const float mr = merge_max[r * G + h];
      if (mr != -INFINITY) {
        const float w = Exp2(mr - mx);
        l = fmaf(merge_sum[r * G + h], w, l);
        o = fmaf(merge_acc[(r * G + h) * hd + d], w, o);
      }
    }
    const int head = head0 + h;
    if (p.n_splits == 1) {
      detail::StoreOut(p.io, seq * p.out_stride + static_cast<int64_t>(head) * hd + d, o / l);
    } else {
      const int64_t part = (static_cast<int64_t>(seq) * p.n_heads + head) * p.n_splits + split;
      p.part_acc[part * hd + d] = o;
      if (d == 0) {
        p.part_ml[part * 2] = mx;
        p.part_ml[part * 2 + 1] = l;
      }
    }
  }
  if (p.n_splits == 1) return;

  // The last of the unit's n_valid splits to get here combines them. Each thread's partials are
  // made visible device-wide before thread 0 counts the block in; the last block reads the
  // others' partials past L1 (__ldcg) and resets the counter for the next call.
  const int n_valid = static_cast<int>((ctx + p.split_tokens - 1) / p.split_tokens);
  PDSERVE_STATIC_SMEM bool last;
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) {
    unsigned* arrived = p.arrived + static_cast<int64_t>(seq) * p.n_units + unit;
    last = atomicAdd(arrived, 1u) == static_cast<unsigned>(n_valid - 1);
    if (last) *arrived = 0;  // every split of this unit has counted in
  }
  __syncthreads();
  if (!last) return;
  __threadfence();
  for (int i = threadIdx.x; i < n_h * hd; i += kThreads) {
    const int h = i / hd;
    const int d = i - h * hd;
    const int head = head0 + h;
    const int64_t part0 = (static_cast<int64_t>(seq) * p.n_heads + head) * p.n_splits;
    float m = -INFINITY;
    for (int s = 0; s < n_valid; ++s) m = fmaxf(m, __ldcg(&p.part_ml[(part0 + s) * 2]));
    float l = 0.0f;
    float o = 0.0f;
    for (int s = 0; s < n_valid; ++s) {
      const float w = Exp2(__ldcg(&p.part_ml[(part0 + s) * 2]) - m);
      l = fmaf(__ldcg(&p.part_ml[(part0 + s) * 2 + 1]), w, l);
      o = fmaf(__ldcg(&p.part_acc[(part0 + s) * hd + d]), w, o);
    }
    detail::StoreOut(p.io, seq * p.out_stride + static_cast<int64_t>(head) * hd + d, o / l);
  }
}

// Query heads per thread block (the kernel's G): the whole group up to 4; larger groups are cut
// into ceil(group / 8) chunks of at most 6 or 8 heads, K/V read once per chunk.
int GroupTile(int group) {
  if (group <= 4) return std::max(group, 1);
  const int n_chunks = (group + 7) / 8;
  const int per_chunk = (group + n_chunks - 1) / n_chunks;
  return per_chunk <= 4 ? 4 : (per_chunk <= 6 ? 6 : 8);
}

// The decode workspace of a multi-split call: a fixed region of arrival counters first (zeroed
// once by the caller; each call leaves the counters it used at zero), then the partial sums and
// the (max, sum) pairs. The counter region does not depend on the shape, so calls of different
// shapes may share a workspace: no call writes partials where another keeps counters.
constexpr size_t kCounterBytes = static_cast<size_t>(kMaxDecodeUnits) * sizeof(unsigned);

struct WorkspaceLayout {
  size_t acc_offset = 0;
  size_t ml_offset = 0;
  size_t total = 0;
};

WorkspaceLayout LayOutWorkspace(const PagedDecodeShape& shape, int n_splits) {
  const size_t parts = static_cast<size_t>(std::max(shape.n_seqs, 0)) *
                       static_cast<size_t>(std::max(shape.n_heads, 0)) *
                       static_cast<size_t>(n_splits);
  WorkspaceLayout w;
  w.acc_offset = kCounterBytes;
  w.ml_offset =
      w.acc_offset + (parts * static_cast<size_t>(std::max(shape.head_dim, 0)) * 4 + 15) / 16 * 16;
  w.total = w.ml_offset + parts * 2 * 4;
  return w;
}

int Log2IfPow2(int x) {
  if (x <= 0 || (x & (x - 1)) != 0) return -1;
  int l = 0;
  while ((1 << l) < x) ++l;
  return l;
}

template <typename KvT, int G>
cudaError_t LaunchSplit(const DecodeParams& p, dim3 grid, cudaStream_t stream) {
  const size_t smem = SplitSmemBytes(G, p.split_tokens, p.kv.block_size, p.kv.head_dim,
                                     p.tpr_log2);
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
    case 2: return LaunchSplit<KvT, 2>(p, grid, stream);
    case 3: return LaunchSplit<KvT, 3>(p, grid, stream);
    case 4: return LaunchSplit<KvT, 4>(p, grid, stream);
    case 6: return LaunchSplit<KvT, 6>(p, grid, stream);
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
    // One wave of resident thread blocks: as many splits as fill it without a second wave
    // (a partial second wave streams with few loads in flight while the rest of the chip
    // idles). A split shorter than 64 positions costs more in its combine than it gains.
    const int64_t want_splits =
        std::max<int64_t>(1, static_cast<int64_t>(ResidentBlocksPerSm(g_tile)) * sms /
                                  blocks_per_split);
    st = (max_ctx + want_splits - 1) / want_splits;
    st = (st + 63) / 64 * 64;
    st = std::clamp<int64_t>(st, 64, kMaxDecodeSplitTokens);
  }
  plan.split_tokens = static_cast<int>(st);
  plan.n_splits = static_cast<int>((max_ctx + st - 1) / st);
  if (plan.n_splits > 1) {
    const WorkspaceLayout w = LayOutWorkspace(shape, plan.n_splits);
    plan.workspace_bytes = w.total;
  }
  return plan;
}

namespace {

// Both overloads: io.q and io.out are bf16 or f32 (io.f32).
cudaError_t DecodeWithIo(const detail::AttentionIo& io, int64_t q_row_stride,
                         const PagedDecodeShape& shape, const PagedKvView& kv,
                         const int32_t* block_tables, int64_t block_table_stride,
                         const int32_t* ctx_lens, float scale, const PagedDecodePlan& plan,
                         void* workspace, size_t workspace_bytes, int64_t out_row_stride,
                         cudaStream_t stream) {
  if (cudaError_t err = detail::CheckAttentionKv(kv, shape.n_heads); err != cudaSuccess) {
    return err;
  }
  PDSERVE_GPU_REQUIRE(shape.n_kv_heads == kv.n_kv_heads && shape.head_dim == kv.head_dim,
                      "paged_attention_decode: shape and KV view disagree on heads/head_dim");
  PDSERVE_GPU_REQUIRE(shape.n_seqs >= 0 && shape.n_seqs <= 65535,
                      "paged_attention_decode: n_seqs must be in [0, 65535]");
  PDSERVE_GPU_REQUIRE(shape.max_ctx >= 0, "paged_attention_decode: max_ctx must be >= 0");
  if (shape.n_seqs == 0) return cudaSuccess;
  PDSERVE_GPU_REQUIRE(io.q != nullptr && io.out != nullptr && block_tables != nullptr &&
                          ctx_lens != nullptr,
                      "paged_attention_decode: null pointer");
  const int64_t row = static_cast<int64_t>(shape.n_heads) * shape.head_dim;
  PDSERVE_GPU_REQUIRE(q_row_stride >= row && out_row_stride >= row,
                      "paged_attention_decode: row strides must be >= n_heads * head_dim");
  PDSERVE_GPU_REQUIRE(detail::Aligned(io.q, 16) && q_row_stride % 8 == 0,
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
  p.io = io;
  p.q_stride = q_row_stride;
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
  p.q_scale = scale * kLog2e;
  p.split_tokens = plan.split_tokens;
  p.n_splits = plan.n_splits;
  int tpr = 1;
  while (tpr * 8 < kv.head_dim) tpr *= 2;
  p.tpr_log2 = Log2IfPow2(tpr);
  if (plan.n_splits > 1) {
    const WorkspaceLayout w = LayOutWorkspace(shape, plan.n_splits);
    p.arrived = static_cast<unsigned*>(workspace);
    p.part_acc = reinterpret_cast<float*>(static_cast<uint8_t*>(workspace) + w.acc_offset);
    p.part_ml = reinterpret_cast<float*>(static_cast<uint8_t*>(workspace) + w.ml_offset);
  }
  p.n_units = kv.n_kv_heads * p.n_head_chunks;
  const int64_t token_bytes = static_cast<int64_t>(kv.n_kv_heads) * kv.head_dim *
                              (kv.dtype == KvDtype::kF32 ? 4 : 2);
  // Byte offsets within a slab, and the position stride of an iteration, are 32-bit.
  PDSERVE_GPU_REQUIRE(token_bytes * 2 * kv.block_size <= INT_MAX,
                      "paged_attention_decode: K/V slab too large");
  p.token_bytes = static_cast<int>(token_bytes);
  PDSERVE_GPU_REQUIRE(static_cast<int64_t>(plan.n_splits) * p.n_units <= INT_MAX,
                      "paged_attention_decode: too many kv heads x splits");
  PDSERVE_GPU_REQUIRE(static_cast<int64_t>(shape.n_seqs) * p.n_units <= kMaxDecodeUnits,
                      "paged_attention_decode: n_seqs x kv heads (x head chunks) exceeds "
                      "kMaxDecodeUnits");

  // Split-major: the thread blocks of one (split, seq) for every kv head are consecutive.
  const dim3 grid(static_cast<unsigned>(plan.n_splits * p.n_units),
                  static_cast<unsigned>(shape.n_seqs));
  cudaError_t err = cudaSuccess;
  switch (kv.dtype) {
    case KvDtype::kF32: err = LaunchSplitFor<float>(g_tile, p, grid, stream); break;
    case KvDtype::kF16: err = LaunchSplitFor<__half>(g_tile, p, grid, stream); break;
    case KvDtype::kBF16: err = LaunchSplitFor<__nv_bfloat16>(g_tile, p, grid, stream); break;
  }
  return err;
}

}  // namespace

cudaError_t PagedAttentionDecode(const __nv_bfloat16* q, int64_t q_row_stride,
                                 const PagedDecodeShape& shape, const PagedKvView& kv,
                                 const int32_t* block_tables, int64_t block_table_stride,
                                 const int32_t* ctx_lens, float scale,
                                 const PagedDecodePlan& plan, void* workspace,
                                 size_t workspace_bytes, __nv_bfloat16* out,
                                 int64_t out_row_stride, cudaStream_t stream) {
  return DecodeWithIo(detail::AttentionIo{q, out, /*f32=*/false}, q_row_stride, shape, kv,
                      block_tables, block_table_stride, ctx_lens, scale, plan, workspace,
                      workspace_bytes, out_row_stride, stream);
}

cudaError_t PagedAttentionDecode(const float* q, int64_t q_row_stride,
                                 const PagedDecodeShape& shape, const PagedKvView& kv,
                                 const int32_t* block_tables, int64_t block_table_stride,
                                 const int32_t* ctx_lens, float scale,
                                 const PagedDecodePlan& plan, void* workspace,
                                 size_t workspace_bytes, float* out, int64_t out_row_stride,
                                 cudaStream_t stream) {
  return DecodeWithIo(detail::AttentionIo{q, out, /*f32=*/true}, q_row_stride, shape, kv,
                      block_tables, block_table_stride, ctx_lens, scale, plan, workspace,
                      workspace_bytes, out_row_stride, stream);
}

}  // namespace pdserve::kernels::gpu
