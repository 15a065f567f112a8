#pragma once
// Helpers shared by the kernels/cpu tests: random valid tensors of every type and the ISAs this
// machine runs.

#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/cpu/dequantize.h"
#include "kernels/cpu/isa.h"
#include "kernels/tensor_type.h"

namespace pdserve::kernels::testing {

inline constexpr TensorType kAllTypes[] = {
    TensorType::kF32,  TensorType::kF16,  TensorType::kBF16, TensorType::kQ4_0,
    TensorType::kQ4_1, TensorType::kQ5_0, TensorType::kQ5_1, TensorType::kQ8_0,
    TensorType::kQ4_K, TensorType::kQ5_K, TensorType::kQ6_K,
};

// Scalar first, then every SIMD variant this CPU runs.
inline std::vector<Isa> RunnableIsas() {
  std::vector<Isa> isas = {Isa::kScalar};
  if (ParseIsa("avx2").ok()) isas.push_back(Isa::kAvx2);
  if (ParseIsa("avx512").ok()) isas.push_back(Isa::kAvx512);
  return isas;
}

inline void PutHalf(uint8_t* p, float value) {
  const uint16_t h = F32ToF16(value);
  std::memcpy(p, &h, sizeof(h));
}

// n_elems elements of `type` (a multiple of its block_elems): random quantized bits with finite
// f16 scales of magnitude up to `scale`; plain types hold values in (-1, 1).
inline std::vector<uint8_t> RandomTensor(TensorType type, int64_t n_elems, std::mt19937& rng,
                                         float scale = 0.02f) {
  const TensorTypeInfo& info = GetTensorTypeInfo(type);
  std::vector<uint8_t> bytes(RowBytes(info, n_elems));
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_real_distribution<float> unit(-1.0f, 1.0f);
  for (uint8_t& b : bytes) b = static_cast<uint8_t>(byte(rng));
  const int64_t n_blocks = n_elems / info.block_elems;
  for (int64_t i = 0; i < n_blocks; ++i) {
    uint8_t* block = bytes.data() + i * info.block_bytes;
    switch (type) {
      case TensorType::kF32: {
        const float f = unit(rng);
        std::memcpy(block, &f, sizeof(f));
        break;
      }
      case TensorType::kF16:
        PutHalf(block, unit(rng));
        break;
      case TensorType::kBF16: {
        const uint16_t b = F32ToBf16(unit(rng));
        std::memcpy(block, &b, sizeof(b));
        break;
      }
      case TensorType::kQ4_0:
      case TensorType::kQ5_0:
      case TensorType::kQ8_0:
        PutHalf(block, scale * unit(rng));
        break;
      case TensorType::kQ4_1:
      case TensorType::kQ5_1:
      case TensorType::kQ4_K:
      case TensorType::kQ5_K:
        PutHalf(block, scale * unit(rng));
        PutHalf(block + 2, scale * unit(rng));
        break;
      case TensorType::kQ6_K:
        PutHalf(block + 208, scale * unit(rng));
        break;
    }
  }
  return bytes;
}

inline std::vector<float> RandomFloats(int64_t n, std::mt19937& rng) {
  std::uniform_real_distribution<float> unit(-1.0f, 1.0f);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& f : v) f = unit(rng);
  return v;
}

inline uint32_t Bits(float f) {
  uint32_t b;
  std::memcpy(&b, &f, sizeof(b));
  return b;
}

}  // namespace pdserve::kernels::testing
