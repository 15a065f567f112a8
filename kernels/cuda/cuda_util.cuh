#pragma once
// Device helpers shared by the .cu files of kernels/cuda (private: not for callers).

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/status.h"

#if defined(PDSERVE_CUDA_HOST_EMULATION)
#include "kernels/cuda/host_emulation.h"
#endif

// PDSERVE_LAUNCH(grid, block, smem_bytes, stream, kernel)(args...) is
// kernel<<<grid, block, smem_bytes, stream>>>(args...), or its host emulation in emulation builds
// (kernels/cuda/host_emulation.h). The kernel comes last so that template arguments with commas
// pass through the preprocessor.
#if defined(PDSERVE_CUDA_HOST_EMULATION)
#define PDSERVE_LAUNCH(grid, block, smem, stream, ...) \
  ::pdserve::kernels::gpu::emu::Launcher(__VA_ARGS__, grid, block, smem, stream)
#define PDSERVE_DYNAMIC_SMEM(name) \
  unsigned char* name = ::pdserve::kernels::gpu::emu::DynamicSharedMemory()
#define PDSERVE_STATIC_SMEM static
#else
#define PDSERVE_LAUNCH(grid, block, smem, stream, ...) __VA_ARGS__<<<grid, block, smem, stream>>>
// The block's dynamic shared memory as `unsigned char name[]`, 16-byte aligned.
#define PDSERVE_DYNAMIC_SMEM(name) extern __shared__ __align__(16) unsigned char name[]
// Declares a block-scope variable in static shared memory.
#define PDSERVE_STATIC_SMEM __shared__
#endif

namespace pdserve::kernels::gpu::detail {

__device__ __forceinline__ float ToFloat(float x) { return x; }
__device__ __forceinline__ float ToFloat(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float ToFloat(__half x) { return __half2float(x); }

template <typename T>
__device__ __forceinline__ T FromFloat(float x);
template <>
__device__ __forceinline__ float FromFloat<float>(float x) { return x; }
template <>
__device__ __forceinline__ __nv_bfloat16 FromFloat<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);
}
template <>
__device__ __forceinline__ __half FromFloat<__half>(float x) { return __float2half_rn(x); }

// Raw 16-bit patterns to float (for GGUF data read as bytes).
__device__ __forceinline__ float HalfBitsToFloat(uint16_t bits) {
  return __half2float(__ushort_as_half(bits));
}
__device__ __forceinline__ float Bf16BitsToFloat(uint16_t bits) {
  return __uint_as_float(static_cast<uint32_t>(bits) << 16);
}

__device__ __forceinline__ float WarpSum(float v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

__device__ __forceinline__ float WarpMax(float v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1)
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}

// Sum over the whole thread block; every thread gets the result. blockDim.x must be a multiple
// of 32 (at most 1024). Uses 33 floats of static shared memory; safe to call repeatedly.
__device__ __forceinline__ float BlockSum(float v) {
  PDSERVE_STATIC_SMEM float partial[32];
  PDSERVE_STATIC_SMEM float total;
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  v = WarpSum(v);
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  if (warp == 0) {
    const int n_warps = blockDim.x >> 5;
    float w = lane < n_warps ? partial[lane] : 0.0f;
    w = WarpSum(w);
    if (lane == 0) total = w;
  }
  __syncthreads();
  const float result = total;
  __syncthreads();  // partial/total may be reused by the next call
  return result;
}

// The error of the launch just made (the launcher's return value).
inline cudaError_t LaunchStatus() { return cudaGetLastError(); }

inline bool Aligned(const void* p, uintptr_t bytes) {
  return (reinterpret_cast<uintptr_t>(p) % bytes) == 0;
}

inline unsigned GridFor(int64_t n_items, int threads, int64_t max_blocks = 65535LL * 16) {
  int64_t blocks = (n_items + threads - 1) / threads;
  if (blocks < 1) blocks = 1;
  if (blocks > max_blocks) blocks = max_blocks;
  return static_cast<unsigned>(blocks);
}

}  // namespace pdserve::kernels::gpu::detail
