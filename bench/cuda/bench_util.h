#pragma once
// Helpers of the GPU benchmarks: error checks that print and bail out (a benchmark must never
// abort the whole GPU check), event timing, a fast host random generator.

#include <cuda_runtime_api.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "kernels/cuda/status.h"

namespace pdserve::bench {

// Evaluates a cudaError_t expression; on failure prints where and why and returns 1 from the
// enclosing function (main or a bool/int-returning step).
#define BENCH_CHECK(expr)                                                                    \
  do {                                                                                       \
    const cudaError_t bench_err_ = (expr);                                                   \
    if (bench_err_ != cudaSuccess) {                                                         \
      std::fprintf(stderr, "FAILED %s:%d: %s: %s [%s]\n", __FILE__, __LINE__, #expr,         \
                   cudaGetErrorString(bench_err_),                                           \
                   ::pdserve::kernels::gpu::LastArgumentError());                            \
      return 1;                                                                              \
    }                                                                                        \
  } while (0)

// Milliseconds between two events recorded around work on a stream.
class EventTimer {
 public:
  EventTimer() {
    cudaEventCreate(&start_);
    cudaEventCreate(&stop_);
  }
  ~EventTimer() {
    cudaEventDestroy(start_);
    cudaEventDestroy(stop_);
  }
  EventTimer(const EventTimer&) = delete;
  EventTimer& operator=(const EventTimer&) = delete;
  cudaError_t Start(cudaStream_t s) { return cudaEventRecord(start_, s); }
  cudaError_t Stop(cudaStream_t s) { return cudaEventRecord(stop_, s); }
  // After Stop: waits and gives the elapsed milliseconds (negative on error).
  float Ms() {
    float ms = -1.0f;
    if (cudaEventSynchronize(stop_) != cudaSuccess) return -1.0f;
    if (cudaEventElapsedTime(&ms, start_, stop_) != cudaSuccess) return -1.0f;
    return ms;
  }

 private:
  cudaEvent_t start_ = nullptr;
  cudaEvent_t stop_ = nullptr;
};

// xorshift64*: fast enough to fill a few hundred MB of weights on the host.
class FastRng {
 public:
  explicit FastRng(uint64_t seed) : s_(seed * 0x9E3779B97F4A7C15ull + 1) {}
  uint64_t Next() {
    s_ ^= s_ >> 12;
    s_ ^= s_ << 25;
    s_ ^= s_ >> 27;
    return s_ * 0x2545F4914F6CDD1Dull;
  }
  // Uniform in [-a, a).
  float Uniform(float a) {
    return (static_cast<float>(Next() >> 40) / static_cast<float>(1ull << 24) * 2.0f - 1.0f) * a;
  }

 private:
  uint64_t s_;
};

// bf16 bits of f (round to nearest even; f is finite).
inline uint16_t ToBf16(float f) {
  uint32_t bits;
  static_assert(sizeof bits == sizeof f);
  __builtin_memcpy(&bits, &f, 4);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>(bits >> 16);
}

inline std::vector<uint16_t> RandomBf16(size_t n, float a, uint64_t seed) {
  FastRng rng(seed);
  std::vector<uint16_t> v(n);
  for (auto& x : v) x = ToBf16(rng.Uniform(a));
  return v;
}

// Device-to-device copy bandwidth, counting bytes read plus bytes written (the convention of
// bandwidth tests), over `bytes`-sized buffers: the best of several timed rounds, in GB/s.
// Returns a negative number on failure.
inline double CopyBandwidthGBps(size_t bytes, cudaStream_t stream) {
  void* a = nullptr;
  void* b = nullptr;
  if (cudaMalloc(&a, bytes) != cudaSuccess || cudaMalloc(&b, bytes) != cudaSuccess) {
    cudaFree(a);
    cudaGetLastError();
    return -1.0;
  }
  cudaMemsetAsync(a, 1, bytes, stream);
  double best = -1.0;
  EventTimer timer;
  for (int round = 0; round < 4; ++round) {
    const int reps = 10;
    timer.Start(stream);
    for (int i = 0; i < reps; ++i) cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, stream);
    timer.Stop(stream);
    const float ms = timer.Ms();
    if (ms <= 0) continue;
    const double gbps = 2.0 * static_cast<double>(bytes) * reps / (ms * 1e-3) / 1e9;
    if (round > 0 && gbps > best) best = gbps;  // round 0 is a warm-up
  }
  cudaFree(a);
  cudaFree(b);
  return best;
}

}  // namespace pdserve::bench
