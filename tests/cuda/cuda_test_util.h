#pragma once
// Helpers of the GPU tests: device buffers, host bf16/f16 conversions, random data, and the
// comparison against plain-C++ references (which the tests write with double accumulation).

#include <cuda_runtime_api.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cuda/status.h"

namespace pdserve::kernels::gpu::testing {

// Expects a launcher's status to be cudaSuccess, then waits for the work and expects no error.
#define EXPECT_LAUNCH_OK(expr)                                                              \
  do {                                                                                      \
    const cudaError_t launch_err_ = (expr);                                                 \
    EXPECT_EQ(launch_err_, cudaSuccess)                                                     \
        << #expr << ": " << cudaGetErrorString(launch_err_) << " ["                         \
        << ::pdserve::kernels::gpu::LastArgumentError() << "]";                             \
    const cudaError_t sync_err_ = cudaDeviceSynchronize();                                  \
    EXPECT_EQ(sync_err_, cudaSuccess) << #expr << " while running: "                        \
                                      << cudaGetErrorString(sync_err_);                     \
  } while (0)

// Expects a launcher to reject its arguments (cudaErrorInvalidValue with a reason).
#define EXPECT_REJECTED(expr)                                                  \
  do {                                                                         \
    EXPECT_EQ((expr), cudaErrorInvalidValue) << #expr;                         \
    EXPECT_STRNE(::pdserve::kernels::gpu::LastArgumentError(), "") << #expr;   \
  } while (0)

// A device allocation of n elements of T; empty (null) when n == 0 or on failure (the test
// then fails with the CUDA error).
template <typename T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t n) : n_(n) {
    if (n == 0) return;
    const cudaError_t err = cudaMalloc(reinterpret_cast<void**>(&ptr_), n * sizeof(T));
    if (err != cudaSuccess) {
      ADD_FAILURE() << "cudaMalloc(" << n * sizeof(T) << " bytes): " << cudaGetErrorString(err);
      ptr_ = nullptr;
      n_ = 0;
    }
  }
  explicit DeviceBuffer(const std::vector<T>& host) : DeviceBuffer(host.size()) { Upload(host); }
  ~DeviceBuffer() {
    if (ptr_ != nullptr) cudaFree(ptr_);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  T* get() const { return ptr_; }
  size_t size() const { return n_; }

  void Upload(const std::vector<T>& host) {
    ASSERT_LE(host.size(), n_);
    if (host.empty()) return;
    const cudaError_t err =
        cudaMemcpy(ptr_, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice);
    ASSERT_EQ(err, cudaSuccess) << cudaGetErrorString(err);
  }
  std::vector<T> Download() const {
    std::vector<T> host(n_);
    if (n_ == 0) return host;
    const cudaError_t err = cudaMemcpy(host.data(), ptr_, n_ * sizeof(T), cudaMemcpyDeviceToHost);
    EXPECT_EQ(err, cudaSuccess) << cudaGetErrorString(err);
    return host;
  }

 private:
  T* ptr_ = nullptr;
  size_t n_ = 0;
};

// ---- Host conversions (round to nearest even, as the device does) ---------------------------

inline float Bf16ToFloat(uint16_t b) {
  const uint32_t bits = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

inline uint16_t FloatToBf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>(bits >> 16);
}

inline float RoundBf16(float f) { return Bf16ToFloat(FloatToBf16(f)); }

inline float HalfToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const int exp = (h >> 10) & 0x1f;
  const uint32_t mant = h & 0x3ffu;
  float f;
  if (exp == 0) {
    f = std::ldexp(static_cast<float>(mant), -24);
  } else if (exp == 31) {
    f = mant ? NAN : INFINITY;
  } else {
    f = std::ldexp(static_cast<float>(mant | 0x400u), exp - 25);
  }
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  bits |= sign;
  std::memcpy(&f, &bits, 4);
  return f;
}

inline uint16_t FloatToHalf(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  x &= 0x7fffffffu;
  if (x > 0x7f800000u) return sign | 0x7e00u;            // NaN
  if (x >= 0x477ff000u) return sign | 0x7c00u;           // overflow to inf (>= 65520)
  if (x < 0x38800000u) {                                 // subnormal or zero in half
    const float a = std::fabs(f);
    const float scaled = a * 16777216.0f;                // units of 2^-24
    const float r = std::nearbyint(scaled);              // default rounding: nearest even
    return sign | static_cast<uint16_t>(r);
  }
  const uint32_t exp = ((x >> 23) - 127 + 15);
  uint32_t mant = x & 0x7fffffu;
  uint32_t h = (exp << 10) | (mant >> 13);
  const uint32_t rest = mant & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ++h;
  return sign | static_cast<uint16_t>(h);
}

inline float RoundHalf(float f) { return HalfToFloat(FloatToHalf(f)); }

// ---- Random data ----------------------------------------------------------------------------

class Rng {
 public:
  explicit Rng(uint32_t seed) : gen_(seed) {}
  float Uniform(float lo, float hi) { return std::uniform_real_distribution<float>(lo, hi)(gen_); }
  int Int(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(gen_); }  // [lo, hi]
  uint8_t Byte() { return static_cast<uint8_t>(Int(0, 255)); }
  std::mt19937& gen() { return gen_; }

  // n values uniform in [lo, hi), as bf16 bit patterns (and their exact float values).
  std::vector<uint16_t> Bf16Vector(size_t n, float lo, float hi) {
    std::vector<uint16_t> v(n);
    for (auto& x : v) x = FloatToBf16(Uniform(lo, hi));
    return v;
  }
  // n floats uniform in [lo, hi).
  std::vector<float> FloatVector(size_t n, float lo, float hi) {
    std::vector<float> v(n);
    for (auto& x : v) x = Uniform(lo, hi);
    return v;
  }

 private:
  std::mt19937 gen_;
};

inline std::vector<float> Bf16ToFloat(const std::vector<uint16_t>& v) {
  std::vector<float> f(v.size());
  for (size_t i = 0; i < v.size(); ++i) f[i] = Bf16ToFloat(v[i]);
  return f;
}

// ---- Comparison -----------------------------------------------------------------------------

// The tolerance of a result: |got - want| <= atol + rtol * |want|.
struct Tolerance {
  double atol;
  double rtol;
};

// bf16 results: rounding to nearest is off by at most half an ulp, 2^-8 of the value (bf16 keeps
// 8 significant bits); the f32 arithmetic before the rounding adds its own small relative error.
inline constexpr double kBf16Rtol = 1.0 / 256 + 3e-5;

// Compares element-wise and reports the count, the worst element and the first few mismatches.
inline ::testing::AssertionResult AllClose(const std::vector<float>& got,
                                           const std::vector<double>& want, Tolerance tol) {
  if (got.size() != want.size()) {
    return ::testing::AssertionFailure()
           << "size " << got.size() << " != expected " << want.size();
  }
  size_t n_bad = 0;
  size_t worst = 0;
  double worst_excess = -1;
  std::string first;
  for (size_t i = 0; i < got.size(); ++i) {
    const double err = std::fabs(static_cast<double>(got[i]) - want[i]);
    const double bound = tol.atol + tol.rtol * std::fabs(want[i]);
    const bool bad = !(err <= bound);  // NaN is bad
    if (bad) {
      if (n_bad < 5) {
        first += "\n  [" + std::to_string(i) + "] got " + std::to_string(got[i]) + " want " +
                 std::to_string(want[i]) + " (err " + std::to_string(err) + " > " +
                 std::to_string(bound) + ")";
      }
      ++n_bad;
    }
    const double excess = std::isnan(err) ? 1e300 : err - bound;
    if (excess > worst_excess) {
      worst_excess = excess;
      worst = i;
    }
  }
  if (n_bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << n_bad << " of " << got.size() << " elements out of tolerance (atol " << tol.atol
         << ", rtol " << tol.rtol << "); worst at [" << worst << "] got " << got[worst]
         << " want " << want[worst] << first;
}

}  // namespace pdserve::kernels::gpu::testing
