// Causal paged-attention prefill, tiled with an online softmax (no n_q × n_ctx matrix).
// Thread block (row tile, kv head): a row is one (query token, query head of the group) pair,
// rows enumerated token-major, kRows per block; the block walks the keys in tiles of kKeys
// positions staged in shared memory as f32, up to the last position its rows may see. Each warp
// owns kRowsPerWarp rows: lane j scores key j of the tile against the rows' queries, the warp
// updates the running max/sum, then every lane accumulates its head_dim/32 output dims.
// CUDA cores, not tensor cores: correct and tiled; a tensor-core version is future work.

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
constexpr int kRowsPerWarp = 4;
constexpr int kRows = kWarps * kRowsPerWarp;  // 16
constexpr int kKeys = 32;
constexpr int kDimsPerLane = detail::kMaxAttentionHeadDim / 32;  // 8

struct PrefillParams {
  detail::AttentionIo io;  // q and out, bf16 or f32
  int64_t q_stride;
  int64_t out_stride;
  const int32_t* block_table;
  PagedKvView kv;
  int n_q;
  int64_t q_start;
  int group;
  float scale;
};

size_t PrefillSmemBytes(int head_dim) {
  return (static_cast<size_t>(kRows) * head_dim + static_cast<size_t>(kKeys) * (head_dim + 1) +
          static_cast<size_t>(kKeys) * head_dim) *
         sizeof(float);
}

template <typename KvT>
__global__ void __launch_bounds__(kThreads) PrefillKernel(PrefillParams p) {
  PDSERVE_DYNAMIC_SMEM(smem);
  const int hd = p.kv.head_dim;
  const int kvh = blockIdx.y;
  const int g = p.group;
  const int64_t total_rows = static_cast<int64_t>(p.n_q) * g;
  const int64_t row0 = static_cast<int64_t>(blockIdx.x) * kRows;
  float* qs = reinterpret_cast<float*>(smem);  // [kRows][hd]
  float* ks = qs + kRows * hd;                 // [kKeys][hd + 1] (padded: lane j reads row j)
  float* vs = ks + kKeys * (hd + 1);           // [kKeys][hd]

  for (int idx = threadIdx.x; idx < kRows * hd; idx += kThreads) {
    const int r = idx / hd;
    const int d = idx - r * hd;
    const int64_t row = row0 + r;
    float v = 0.0f;
    if (row < total_rows) {
      const int64_t i = row / g;
      const int h = static_cast<int>(row - i * g);
      v = detail::LoadQ(p.io, i * p.q_stride + static_cast<int64_t>(kvh * g + h) * hd + d) *
          p.scale;
    }
    qs[idx] = v;
  }

  const int warp = threadIdx.x >> 5;
  const int lane = threadIdx.x & 31;
  int64_t pos[kRowsPerWarp];  // the position of each of this warp's rows; -1: no row
  float m[kRowsPerWarp];
  float l[kRowsPerWarp];
  float acc[kRowsPerWarp][kDimsPerLane];
#pragma unroll
  for (int k = 0; k < kRowsPerWarp; ++k) {
    const int64_t row = row0 + warp + kWarps * k;
    pos[k] = row < total_rows ? p.q_start + row / g : -1;
    m[k] = -INFINITY;
    l[k] = 0.0f;
#pragma unroll
    for (int j = 0; j < kDimsPerLane; ++j) acc[k][j] = 0.0f;
  }
  const int64_t last_row = min(row0 + kRows, total_rows) - 1;
  const int64_t max_pos = p.q_start + last_row / g;  // the last key any row here sees

  const int bs = p.kv.block_size;
  const size_t token_bytes = static_cast<size_t>(p.kv.n_kv_heads) * hd * sizeof(KvT);
  const int chunks_per_key = hd / 8;
  for (int64_t k0 = 0; k0 <= max_pos; k0 += kKeys) {
    __syncthreads();  // the previous tile is consumed (and, the first time, qs is written)
    for (int idx = threadIdx.x; idx < kKeys * chunks_per_key; idx += kThreads) {
      const int kk = idx / chunks_per_key;
      const int d0 = (idx - kk * chunks_per_key) * 8;
      const int64_t key = k0 + kk;
      float kf[8] = {};
      float vf[8] = {};
      if (key <= max_pos) {
        const int64_t block = key / bs;
        const int32_t id = p.block_table[block];
        if (id >= 0 && id < p.kv.n_blocks) {
          const uint8_t* base = p.kv.pool + static_cast<size_t>(id) * p.kv.block_bytes +
                                static_cast<size_t>(key - block * bs) * token_bytes +
                                (static_cast<size_t>(kvh) * hd + d0) * sizeof(KvT);
          Raw8<KvT> kr;
          Raw8<KvT> vr;
          Load8(reinterpret_cast<const KvT*>(base + p.kv.k_offset_bytes), kr);
          Load8(reinterpret_cast<const KvT*>(base + p.kv.v_offset_bytes), vr);
          Widen8(kr, kf);
          Widen8(vr, vf);
        }
      }
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        ks[kk * (hd + 1) + d0 + j] = kf[j];
        vs[kk * hd + d0 + j] = vf[j];
      }
    }
    __syncthreads();

    // Scores of key k0 + lane for this warp's rows.
    float s[kRowsPerWarp];
#pragma unroll
    for (int k = 0; k < kRowsPerWarp; ++k) s[k] = 0.0f;
    const float* krow = ks + lane * (hd + 1);
    for (int d = 0; d < hd; ++d) {
      const float kd = krow[d];
#pragma unroll
      for (int k = 0; k < kRowsPerWarp; ++k) {
        s[k] = fmaf(qs[(warp + kWarps * k) * hd + d], kd, s[k]);
      }
    }
    const int64_t key = k0 + lane;
    float pr[kRowsPerWarp];
#pragma unroll
    for (int k = 0; k < kRowsPerWarp; ++k) {
      const bool visible = key <= pos[k];
      const float tile_max = detail::WarpMax(visible ? s[k] : -INFINITY);
      const float m_new = fmaxf(m[k], tile_max);
      // m_new is -inf only for a row that has seen no visible key yet (or no row at all).
      const float correction = m_new == -INFINITY ? 1.0f : expf(m[k] - m_new);
      pr[k] = visible ? expf(s[k] - m_new) : 0.0f;
      l[k] = l[k] * correction + detail::WarpSum(pr[k]);
      m[k] = m_new;
#pragma unroll
      for (int j = 0; j < kDimsPerLane; ++j) acc[k][j] *= correction;
    }
    const int64_t keys_left = max_pos - k0 + 1;
    const int n_keys = keys_left < kKeys ? static_cast<int>(keys_left) : kKeys;
    for (int kk = 0; kk < n_keys; ++kk) {
      float pk[kRowsPerWarp];
#pragma unroll
      for (int k = 0; k < kRowsPerWarp; ++k) pk[k] = __shfl_sync(0xffffffffu, pr[k], kk);
      const float* vrow = vs + kk * hd;
#pragma unroll
      for (int j = 0; j < kDimsPerLane; ++j) {
        const int d = lane + 32 * j;
        if (d < hd) {
          const float vd = vrow[d];
#pragma unroll
          for (int k = 0; k < kRowsPerWarp; ++k) acc[k][j] = fmaf(pk[k], vd, acc[k][j]);
        }
      }
    }
  }

#pragma unroll
  for (int k = 0; k < kRowsPerWarp; ++k) {
    const int64_t row = row0 + warp + kWarps * k;
    if (row >= total_rows) continue;
    const int64_t i = row / g;
    const int h = static_cast<int>(row - i * g);
    const int64_t o = i * p.out_stride + static_cast<int64_t>(kvh * g + h) * hd;
    const float inv_l = l[k] > 0.0f ? 1.0f / l[k] : 0.0f;
#pragma unroll
    for (int j = 0; j < kDimsPerLane; ++j) {
      const int d = lane + 32 * j;
      if (d < hd) detail::StoreOut(p.io, o + d, acc[k][j] * inv_l);
    }
  }
}

template <typename KvT>
cudaError_t LaunchPrefill(const PrefillParams& p, dim3 grid, cudaStream_t stream) {
  const size_t smem = PrefillSmemBytes(p.kv.head_dim);
  if (smem > 48 * 1024) {
    const cudaError_t err = cudaFuncSetAttribute(
        reinterpret_cast<const void*>(&PrefillKernel<KvT>),
        cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
    if (err != cudaSuccess) return err;
  }
  PDSERVE_LAUNCH(grid, kThreads, smem, stream, PrefillKernel<KvT>)(p);
  return detail::LaunchStatus();
}

// Both overloads: io.q and io.out are bf16 or f32 (io.f32).
cudaError_t PrefillWithIo(const detail::AttentionIo& io, int64_t q_row_stride, int n_q,
                          int64_t q_start, int n_heads, const PagedKvView& kv,
                          const int32_t* block_table, float scale, int64_t out_row_stride,
                          cudaStream_t stream) {
  if (cudaError_t err = detail::CheckAttentionKv(kv, n_heads); err != cudaSuccess) return err;
  PDSERVE_GPU_REQUIRE(n_q >= 0 && q_start >= 0,
                      "paged_attention_prefill: n_q and q_start must be >= 0");
  if (n_q == 0) return cudaSuccess;
  PDSERVE_GPU_REQUIRE(io.q != nullptr && io.out != nullptr && block_table != nullptr,
                      "paged_attention_prefill: null pointer");
  const int64_t row = static_cast<int64_t>(n_heads) * kv.head_dim;
  PDSERVE_GPU_REQUIRE(q_row_stride >= row && out_row_stride >= row,
                      "paged_attention_prefill: row strides must be >= n_heads * head_dim");
  PDSERVE_GPU_REQUIRE(kv.n_kv_heads <= 65535, "paged_attention_prefill: too many kv heads");
  PrefillParams p{};
  p.io = io;
  p.q_stride = q_row_stride;
  p.out_stride = out_row_stride;
  p.block_table = block_table;
  p.kv = kv;
  p.n_q = n_q;
  p.q_start = q_start;
  p.group = n_heads / kv.n_kv_heads;
  p.scale = scale;
  const int64_t row_tiles = (static_cast<int64_t>(n_q) * p.group + kRows - 1) / kRows;
  PDSERVE_GPU_REQUIRE(row_tiles <= 0x7fffffff, "paged_attention_prefill: n_q too large");
  const dim3 grid(static_cast<unsigned>(row_tiles), static_cast<unsigned>(kv.n_kv_heads));
  switch (kv.dtype) {
    case KvDtype::kF32: return LaunchPrefill<float>(p, grid, stream);
    case KvDtype::kF16: return LaunchPrefill<__half>(p, grid, stream);
    case KvDtype::kBF16: return LaunchPrefill<__nv_bfloat16>(p, grid, stream);
  }
  return detail::ArgumentError("paged_attention_prefill: unknown KV dtype");
}

}  // namespace

cudaError_t PagedAttentionPrefill(const __nv_bfloat16* q, int64_t q_row_stride, int n_q,
                                  int64_t q_start, int n_heads, const PagedKvView& kv,
                                  const int32_t* block_table, float scale, __nv_bfloat16* out,
                                  int64_t out_row_stride, cudaStream_t stream) {
  return PrefillWithIo(detail::AttentionIo{q, out, /*f32=*/false}, q_row_stride, n_q, q_start,
                       n_heads, kv, block_table, scale, out_row_stride, stream);
}

cudaError_t PagedAttentionPrefill(const float* q, int64_t q_row_stride, int n_q, int64_t q_start,
                                  int n_heads, const PagedKvView& kv, const int32_t* block_table,
                                  float scale, float* out, int64_t out_row_stride,
                                  cudaStream_t stream) {
  return PrefillWithIo(detail::AttentionIo{q, out, /*f32=*/true}, q_row_stride, n_q, q_start,
                       n_heads, kv, block_table, scale, out_row_stride, stream);
}

}  // namespace pdserve::kernels::gpu
