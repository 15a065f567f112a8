#pragma once
// Host emulation of the CUDA execution model, so that the kernels of kernels/cuda can run, and be
// tested, on a machine with no GPU: builds that define PDSERVE_CUDA_HOST_EMULATION compile the
// .cu files as plain C++ (tests/cuda/emulation), and cuda_util.cuh includes this header.
//
// A launch runs its thread blocks one after another on the calling thread. The threads of a
// block are cooperative user-space threads (own stacks) that switch only at __syncthreads() and at
// warp shuffles, so block-wide barriers, shared memory and shuffles behave as on the device,
// deterministically. It models semantics, not speed, and finds no races (every thread sees the
// others' writes in program order); compute-sanitizer on a GPU covers those. A barrier that some
// threads never reach aborts with a message.
//
// Not for production builds: nvcc never sees this header.

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <math.h>  // the device's C math functions (expf, sqrtf, sincos, ...) at global scope

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

namespace pdserve::kernels::gpu::emu {

// The running thread's coordinates (set by the scheduler at every switch).
extern uint3 g_thread_idx;
extern uint3 g_block_idx;
extern dim3 g_block_dim;
extern dim3 g_grid_dim;

void SyncThreads();
uint32_t ShuffleBits(uint32_t bits, int src_lane_or_mask, bool xor_mode);
unsigned char* DynamicSharedMemory();

// Runs `body` as every thread of every block of the grid, with `smem_bytes` of dynamic shared
// memory per block.
void RunGrid(dim3 grid, dim3 block, size_t smem_bytes, const std::function<void()>& body);

// Stream capture (cudaStreamBeginCapture ... cudaStreamEndCapture in the fake runtime): while a
// capture is open on this thread, launches, the runtime's async copies and the fake cuBLAS GEMM
// are recorded, not run; a graph launch replays them in order.
using CapturedWork = std::vector<std::function<void()>>;
bool Capturing();
void Record(std::function<void()> work);
// Starts recording into *into; fails (false) when a capture is already open.
bool BeginCapture(CapturedWork* into);
// Stops recording; false when no capture was open.
bool EndCapture();

template <typename... P>
struct LaunchConfig {
  void (*kernel)(P...);
  dim3 grid;
  dim3 block;
  size_t smem;
  template <typename... A>
  void operator()(A&&... args) const {
    // Parameters are copied, as a kernel launch copies them.
    std::tuple<std::decay_t<P>...> params(std::forward<A>(args)...);
    if (Capturing()) {
      Record([k = kernel, g = grid, b = block, m = smem, params] {
        RunGrid(g, b, m, [&] { std::apply(k, params); });
      });
      return;
    }
    RunGrid(grid, block, smem, [&] { std::apply(kernel, params); });
  }
};

template <typename... P>
LaunchConfig<P...> Launcher(void (*kernel)(P...), dim3 grid, dim3 block, size_t smem,
                            cudaStream_t /*stream*/) {
  return LaunchConfig<P...>{kernel, grid, block, smem};
}

template <typename T>
T Shuffle(T v, int lane, bool xor_mode) {
  static_assert(sizeof(T) == 4, "emulated shuffles move 4-byte values");
  uint32_t bits;
  std::memcpy(&bits, &v, 4);
  bits = ShuffleBits(bits, lane, xor_mode);
  std::memcpy(&v, &bits, 4);
  return v;
}

}  // namespace pdserve::kernels::gpu::emu

#ifndef __launch_bounds__
#define __launch_bounds__(...)
#endif
#define threadIdx (::pdserve::kernels::gpu::emu::g_thread_idx)
#define blockIdx (::pdserve::kernels::gpu::emu::g_block_idx)
#define blockDim (::pdserve::kernels::gpu::emu::g_block_dim)
#define gridDim (::pdserve::kernels::gpu::emu::g_grid_dim)

inline void __syncthreads() { ::pdserve::kernels::gpu::emu::SyncThreads(); }
template <typename T>
inline T __shfl_xor_sync(unsigned /*mask*/, T v, int lane_mask) {
  return ::pdserve::kernels::gpu::emu::Shuffle(v, lane_mask, true);
}
template <typename T>
inline T __shfl_sync(unsigned /*mask*/, T v, int src_lane) {
  return ::pdserve::kernels::gpu::emu::Shuffle(v, src_lane, false);
}
inline uint4 __ldg(const uint4* p) { return *p; }
inline float __uint_as_float(unsigned int u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline unsigned int __float_as_uint(float f) {
  unsigned int u;
  std::memcpy(&u, &f, 4);
  return u;
}
// Host float arithmetic rounds to nearest and, in ISO C++ mode, is not contracted into FMAs.
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
// Blocks run one after another and threads switch only at barriers and shuffles, so an atomic
// is a plain read-modify-write and every write is already visible to later blocks.
inline unsigned int atomicAdd(unsigned int* address, unsigned int value) {
  const unsigned int old = *address;
  *address = old + value;
  return old;
}
inline void __threadfence() {}
template <typename T>
inline T __ldcg(const T* p) {
  return *p;
}
// The device's overloaded min/max, for same-typed arguments.
template <typename T>
inline T min(T a, T b) { return b < a ? b : a; }
template <typename T>
inline T max(T a, T b) { return a < b ? b : a; }
