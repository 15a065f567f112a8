#include "kernels/cuda/dequantize.h"

#include "kernels/cuda/cuda_util.cuh"

namespace pdserve::kernels::gpu {
namespace {

using detail::Bf16BitsToFloat;
using detail::HalfBitsToFloat;

// GGUF block geometry (ggml-common.h): elements per block, bytes per block.
struct Geometry {
  int elems;
  int bytes;
};

__host__ __device__ inline Geometry GeometryOf(TensorType type) {
  switch (type) {
    case TensorType::kF32: return {1, 4};
    case TensorType::kF16: return {1, 2};
    case TensorType::kBF16: return {1, 2};
    case TensorType::kQ4_0: return {32, 18};   // f16 d; u8 qs[16]
    case TensorType::kQ4_1: return {32, 20};   // f16 d, f16 m; u8 qs[16]
    case TensorType::kQ8_0: return {32, 34};   // f16 d; i8 qs[32]
    case TensorType::kQ4_K: return {256, 144}; // f16 d, f16 dmin; u8 scales[12]; u8 qs[128]
    case TensorType::kQ6_K: return {256, 210}; // u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d
    default: return {0, 0};
  }
}

__device__ __forceinline__ uint16_t Load16(const uint8_t* p) {
  return *reinterpret_cast<const uint16_t*>(p);  // 2-byte aligned: block sizes are even
}

// Element j of the block at `block`, as ggml's dequantize_row_<type> computes it. __fmul_rn and
// __fadd_rn keep nvcc from contracting into FMAs, which would round differently from the CPU.
__device__ float DequantizeElement(TensorType type, const uint8_t* block, int j) {
  switch (type) {
    case TensorType::kF32:
      return *reinterpret_cast<const float*>(block);
    case TensorType::kF16:
      return HalfBitsToFloat(Load16(block));
    case TensorType::kBF16:
      return Bf16BitsToFloat(Load16(block));
    case TensorType::kQ4_0: {
      const float d = HalfBitsToFloat(Load16(block));
      const uint8_t q = block[2 + (j & 15)];
      const int x = (j < 16 ? (q & 0x0F) : (q >> 4)) - 8;
      return __fmul_rn(static_cast<float>(x), d);
    }
    case TensorType::kQ4_1: {
      const float d = HalfBitsToFloat(Load16(block));
      const float m = HalfBitsToFloat(Load16(block + 2));
      const uint8_t q = block[4 + (j & 15)];
      const int x = j < 16 ? (q & 0x0F) : (q >> 4);
      return __fadd_rn(__fmul_rn(static_cast<float>(x), d), m);
    }
    case TensorType::kQ8_0: {
      const float d = HalfBitsToFloat(Load16(block));
      const int8_t q = static_cast<int8_t>(block[2 + j]);
      return __fmul_rn(static_cast<float>(q), d);
    }
    case TensorType::kQ4_K: {
      const float d = HalfBitsToFloat(Load16(block));
      const float dmin = HalfBitsToFloat(Load16(block + 2));
      const uint8_t* scales = block + 4;
      const uint8_t* qs = block + 16;
      const int chunk = j >> 6;  // 64 elements per chunk, two sub-blocks of 32
      const int l = j & 63;
      const int is = 2 * chunk + (l >> 5);
      uint8_t sc;
      uint8_t mn;
      if (is < 4) {  // ggml's get_scale_min_k4
        sc = scales[is] & 63;
        mn = scales[is + 4] & 63;
      } else {
        sc = (scales[is + 4] & 0xF) | ((scales[is - 4] >> 6) << 4);
        mn = (scales[is + 4] >> 4) | ((scales[is] >> 6) << 4);
      }
      const uint8_t q = qs[chunk * 32 + (l & 31)];
      const int x = l < 32 ? (q & 0xF) : (q >> 4);
      const float d1 = __fmul_rn(d, static_cast<float>(sc));
      const float m1 = __fmul_rn(dmin, static_cast<float>(mn));
      return __fsub_rn(__fmul_rn(d1, static_cast<float>(x)), m1);
    }
    case TensorType::kQ6_K: {
      const uint8_t* ql = block;
      const uint8_t* qh = block + 128;
      const int8_t* sc = reinterpret_cast<const int8_t*>(block + 192);
      const float d = HalfBitsToFloat(Load16(block + 208));
      const int half = j >> 7;  // 128 elements per half
      const int r = j & 127;
      const int quarter = r >> 5;
      const int l = r & 31;
      ql += half * 64;
      qh += half * 32;
      sc += half * 8;
      const int is = l >> 4;
      const uint8_t low = (quarter & 1) ? ql[l + 32] : ql[l];
      const int low4 = (quarter < 2) ? (low & 0xF) : (low >> 4);
      const int high2 = (qh[l] >> (2 * quarter)) & 3;
      const int q = (low4 | (high2 << 4)) - 32;
      return __fmul_rn(__fmul_rn(d, static_cast<float>(sc[is + 2 * quarter])),
                       static_cast<float>(q));
    }
    default:
      return 0.0f;
  }
}

template <typename OutT>
__global__ void DequantizeKernel(TensorType type, Geometry g, const uint8_t* src, int64_t n,
                                 OutT* dst) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t block = i / g.elems;
    const int j = static_cast<int>(i - block * g.elems);
    const float v = DequantizeElement(type, src + block * g.bytes, j);
    dst[i] = detail::FromFloat<OutT>(v);
  }
}

// grid: (chunks of dim, n_tokens)
template <typename OutT>
__global__ void EmbeddingKernel(TensorType type, Geometry g, const uint8_t* table, int64_t vocab,
                                int64_t dim, int64_t row_bytes, const int32_t* token_ids,
                                OutT* out) {
  const int t = blockIdx.y;
  const int32_t id = token_ids[t];
  const bool valid = id >= 0 && id < vocab;
  const uint8_t* row = table + (valid ? id : 0) * row_bytes;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < dim;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    float v = 0.0f;
    if (valid) {
      const int64_t block = i / g.elems;
      v = DequantizeElement(type, row + block * g.bytes, static_cast<int>(i - block * g.elems));
    }
    out[t * dim + i] = detail::FromFloat<OutT>(v);
  }
}

cudaError_t CheckSource(TensorType type, const void* src, int64_t n) {
  const Geometry g = GeometryOf(type);
  PDSERVE_GPU_REQUIRE(g.elems > 0,
                      "dequantize: tensor type not supported on CUDA "
                      "(F32, F16, BF16, Q4_0, Q4_1, Q8_0, Q4_K, Q6_K are)");
  PDSERVE_GPU_REQUIRE(src != nullptr, "dequantize: source is null");
  PDSERVE_GPU_REQUIRE(n > 0 && n % g.elems == 0,
                      "dequantize: element count must be > 0 and a multiple of the block size");
  PDSERVE_GPU_REQUIRE(detail::Aligned(src, type == TensorType::kF32 ? 4 : 2),
                      "dequantize: source is not aligned (2 bytes, 4 for F32)");
  return cudaSuccess;
}

}  // namespace

bool DequantizeSupported(TensorType type) { return GeometryOf(type).elems > 0; }

cudaError_t Dequantize(TensorType type, const void* src, int64_t n, ActDtype out_dtype, void* dst,
                       cudaStream_t stream) {
  if (cudaError_t err = CheckSource(type, src, n); err != cudaSuccess) return err;
  PDSERVE_GPU_REQUIRE(dst != nullptr, "dequantize: destination is null");
  const Geometry g = GeometryOf(type);
  const auto* bytes = static_cast<const uint8_t*>(src);
  constexpr int kThreads = 256;
  const unsigned grid = detail::GridFor(n, kThreads);
  switch (out_dtype) {
    case ActDtype::kF32:
      PDSERVE_GPU_REQUIRE(detail::Aligned(dst, 4), "dequantize: f32 destination not aligned");
      PDSERVE_LAUNCH(grid, kThreads, 0, stream, DequantizeKernel<float>)(
          type, g, bytes, n, static_cast<float*>(dst));
      break;
    case ActDtype::kBF16:
      PDSERVE_GPU_REQUIRE(detail::Aligned(dst, 2), "dequantize: bf16 destination not aligned");
      PDSERVE_LAUNCH(grid, kThreads, 0, stream, DequantizeKernel<__nv_bfloat16>)(
          type, g, bytes, n, static_cast<__nv_bfloat16*>(dst));
      break;
    default:
      return detail::ArgumentError("dequantize: output dtype must be f32 or bf16");
  }
  return detail::LaunchStatus();
}

cudaError_t EmbeddingLookup(TensorType type, const void* table, int64_t vocab, int64_t dim,
                            const int32_t* token_ids, int n_tokens, ActDtype out_dtype, void* out,
                            cudaStream_t stream) {
  PDSERVE_GPU_REQUIRE(vocab > 0, "embedding_lookup: vocab must be > 0");
  if (cudaError_t err = CheckSource(type, table, dim); err != cudaSuccess) return err;
  PDSERVE_GPU_REQUIRE(n_tokens >= 0 && n_tokens <= 65535,
                      "embedding_lookup: n_tokens must be in [0, 65535]");
  if (n_tokens == 0) return cudaSuccess;
  PDSERVE_GPU_REQUIRE(token_ids != nullptr && out != nullptr,
                      "embedding_lookup: token_ids or out is null");
  const Geometry g = GeometryOf(type);
  const int64_t row_bytes = dim / g.elems * g.bytes;
  PDSERVE_GPU_REQUIRE(row_bytes % (type == TensorType::kF32 ? 4 : 2) == 0,
                      "embedding_lookup: rows are not aligned");
  const auto* bytes = static_cast<const uint8_t*>(table);
  constexpr int kThreads = 256;
  const dim3 grid(detail::GridFor(dim, kThreads, 64), static_cast<unsigned>(n_tokens));
  switch (out_dtype) {
    case ActDtype::kF32:
      PDSERVE_LAUNCH(grid, kThreads, 0, stream, EmbeddingKernel<float>)(
          type, g, bytes, vocab, dim, row_bytes, token_ids, static_cast<float*>(out));
      break;
    case ActDtype::kBF16:
      PDSERVE_LAUNCH(grid, kThreads, 0, stream, EmbeddingKernel<__nv_bfloat16>)(
          type, g, bytes, vocab, dim, row_bytes, token_ids, static_cast<__nv_bfloat16*>(out));
      break;
    default:
      return detail::ArgumentError("embedding_lookup: output dtype must be f32 or bf16");
  }
  return detail::LaunchStatus();
}

}  // namespace pdserve::kernels::gpu
