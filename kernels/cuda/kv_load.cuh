#pragma once
// Loading 8 consecutive K/V elements (one 16-byte load for f16/bf16, two for f32) and widening
// them to f32. Private to the attention kernels. Addresses are 16-byte aligned (checked by the
// launchers: head_dim % 8 == 0, pool and slab offsets 16-byte aligned).
// Also the q loads and out stores of the attention kernels, whose q/out rows are bf16 or f32
// (chosen at run time, uniformly for a launch: one kernel body serves both).

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

namespace pdserve::kernels::gpu::detail {

template <typename T>
struct Raw8 {
  uint4 w;
};
template <>
struct Raw8<float> {
  uint4 w[2];
};

__device__ __forceinline__ void Load8(const __nv_bfloat16* p, Raw8<__nv_bfloat16>& r) {
  r.w = __ldg(reinterpret_cast<const uint4*>(p));
}
__device__ __forceinline__ void Load8(const __half* p, Raw8<__half>& r) {
  r.w = __ldg(reinterpret_cast<const uint4*>(p));
}
__device__ __forceinline__ void Load8(const float* p, Raw8<float>& r) {
  r.w[0] = __ldg(reinterpret_cast<const uint4*>(p));
  r.w[1] = __ldg(reinterpret_cast<const uint4*>(p) + 1);
}

template <typename T>
__device__ __forceinline__ void Zero8(Raw8<T>& r) {
  r = Raw8<T>{};
}

__device__ __forceinline__ void Bf16PairToFloat(uint32_t w, float& lo, float& hi) {
  lo = __uint_as_float(w << 16);
  hi = __uint_as_float(w & 0xffff0000u);
}

__device__ __forceinline__ void Widen8(const Raw8<__nv_bfloat16>& r, float f[8]) {
  Bf16PairToFloat(r.w.x, f[0], f[1]);
  Bf16PairToFloat(r.w.y, f[2], f[3]);
  Bf16PairToFloat(r.w.z, f[4], f[5]);
  Bf16PairToFloat(r.w.w, f[6], f[7]);
}

__device__ __forceinline__ void HalfPairToFloat(uint32_t w, float& lo, float& hi) {
  lo = __half2float(__ushort_as_half(static_cast<unsigned short>(w & 0xffffu)));
  hi = __half2float(__ushort_as_half(static_cast<unsigned short>(w >> 16)));
}

__device__ __forceinline__ void Widen8(const Raw8<__half>& r, float f[8]) {
  HalfPairToFloat(r.w.x, f[0], f[1]);
  HalfPairToFloat(r.w.y, f[2], f[3]);
  HalfPairToFloat(r.w.z, f[4], f[5]);
  HalfPairToFloat(r.w.w, f[6], f[7]);
}

__device__ __forceinline__ void Widen8(const Raw8<float>& r, float f[8]) {
  f[0] = __uint_as_float(r.w[0].x);
  f[1] = __uint_as_float(r.w[0].y);
  f[2] = __uint_as_float(r.w[0].z);
  f[3] = __uint_as_float(r.w[0].w);
  f[4] = __uint_as_float(r.w[1].x);
  f[5] = __uint_as_float(r.w[1].y);
  f[6] = __uint_as_float(r.w[1].z);
  f[7] = __uint_as_float(r.w[1].w);
}

// q/out elements: f32 (read and written exactly) or bf16 (out rounded to nearest).
struct AttentionIo {
  const void* q;
  void* out;
  bool f32;
};

// Elements [at, at + 8) of q, widened; q + at is 16-byte aligned.
__device__ __forceinline__ void LoadQ8(const AttentionIo& io, int64_t at, float f[8]) {
  if (io.f32) {
    Raw8<float> r;
    Load8(static_cast<const float*>(io.q) + at, r);
    Widen8(r, f);
  } else {
    Raw8<__nv_bfloat16> r;
    Load8(static_cast<const __nv_bfloat16*>(io.q) + at, r);
    Widen8(r, f);
  }
}

__device__ __forceinline__ float LoadQ(const AttentionIo& io, int64_t at) {
  return io.f32 ? static_cast<const float*>(io.q)[at]
                : __bfloat162float(static_cast<const __nv_bfloat16*>(io.q)[at]);
}

__device__ __forceinline__ void StoreOut(const AttentionIo& io, int64_t at, float v) {
  if (io.f32) {
    static_cast<float*>(io.out)[at] = v;
  } else {
    static_cast<__nv_bfloat16*>(io.out)[at] = __float2bfloat16_rn(v);
  }
}

}  // namespace pdserve::kernels::gpu::detail
