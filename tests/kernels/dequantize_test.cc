// Dequantization: every SIMD variant equals the scalar reference bit for bit (the scalar one is
// checked against the `gguf` package by test_dequantize_vs_gguf.py), and the f16/bf16 converters
// are exact and round to nearest even.

#include "kernels/cpu/dequantize.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/matmul.h"
#include "tests/kernels/kernel_test_util.h"

namespace pdserve::kernels {
namespace {

using testing::Bits;
using testing::kAllTypes;
using testing::RandomTensor;
using testing::RunnableIsas;

TEST(F16Test, EveryHalfRoundTrips) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = F16ToF32(static_cast<uint16_t>(h));
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(F16ToF32(F32ToF16(f)))) << h;
      continue;
    }
    EXPECT_EQ(F32ToF16(f), h) << h;
  }
}

TEST(F16Test, KnownValues) {
  EXPECT_EQ(F16ToF32(0x3c00), 1.0f);
  EXPECT_EQ(F16ToF32(0xc000), -2.0f);
  EXPECT_EQ(F16ToF32(0x7bff), 65504.0f);
  EXPECT_EQ(F16ToF32(0x0001), std::ldexp(1.0f, -24));
  EXPECT_EQ(F16ToF32(0x03ff), std::ldexp(1023.0f, -24));
  EXPECT_EQ(F16ToF32(0x7c00), std::numeric_limits<float>::infinity());
  EXPECT_EQ(Bits(F16ToF32(0x7c01)), 0x7f802000u);  // payload kept, as numpy does
  EXPECT_EQ(F32ToF16(65519.0f), 0x7bff);
  EXPECT_EQ(F32ToF16(65520.0f), 0x7c00);          // the tie above the largest half rounds up
  EXPECT_EQ(F32ToF16(std::ldexp(1.0f, -25)), 0);  // the tie below the smallest subnormal: even
  EXPECT_EQ(F32ToF16(std::nextafter(std::ldexp(1.0f, -25), 1.0f)), 1);
  EXPECT_EQ(F32ToF16(1.0f + std::ldexp(1.0f, -11)), 0x3c00);      // tie, down to even
  EXPECT_EQ(F32ToF16(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);  // tie, up to even
  EXPECT_EQ(F32ToF16(-0.0f), 0x8000);
  EXPECT_TRUE(std::isnan(F16ToF32(F32ToF16(std::numeric_limits<float>::quiet_NaN()))));
}

// F32ToF16 picks the nearest half, and the even one on a tie.
TEST(F16Test, RandomFloatsRoundToNearestEven) {
  std::mt19937 rng(1);
  std::uniform_int_distribution<uint32_t> bits(0, 0x477fefffu);  // |f| <= 65504 + a bit
  for (int i = 0; i < 200000; ++i) {
    uint32_t b = bits(rng) | ((i & 1) ? 0x80000000u : 0);
    float f;
    std::memcpy(&f, &b, sizeof(f));
    const uint16_t h = F32ToF16(f);
    const double error = std::fabs(static_cast<double>(F16ToF32(h)) - f);
    for (int delta : {-1, 1}) {
      const uint16_t neighbour = static_cast<uint16_t>(h + delta);
      if ((neighbour & 0x7fff) > 0x7bff || ((neighbour ^ h) & 0x8000)) continue;
      const double other = std::fabs(static_cast<double>(F16ToF32(neighbour)) - f);
      ASSERT_LE(error, other) << f;
      if (error == other) {
        ASSERT_EQ(h & 1, 0) << f;
      }
    }
  }
}

TEST(Bf16Test, ConvertsAndRoundsToNearestEven) {
  EXPECT_EQ(Bf16ToF32(0x3f80), 1.0f);
  EXPECT_EQ(F32ToBf16(1.0f), 0x3f80);
  EXPECT_EQ(F32ToBf16(1.0f + std::ldexp(1.0f, -8)), 0x3f80);      // tie, down to even
  EXPECT_EQ(F32ToBf16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3f82);  // tie, up to even
  EXPECT_EQ(F32ToBf16(std::nextafter(1.0f + std::ldexp(1.0f, -8), 2.0f)), 0x3f81);
  EXPECT_TRUE(std::isnan(Bf16ToF32(F32ToBf16(std::numeric_limits<float>::quiet_NaN()))));
  for (uint32_t b = 0; b < 65536; ++b) {
    const float f = Bf16ToF32(static_cast<uint16_t>(b));
    EXPECT_EQ(Bits(f), b << 16);
    if (!std::isnan(f)) {
      EXPECT_EQ(F32ToBf16(f), b);
    }
  }
}

// Every variant dequantizes every type like the scalar reference, bit for bit.
TEST(DequantizeTest, SimdMatchesScalarBitwise) {
  std::mt19937 rng(7);
  for (TensorType type : kAllTypes) {
    const TensorTypeInfo& info = GetTensorTypeInfo(type);
    const int64_t n = info.block_elems == 1 ? 1027 : info.block_elems * 9;
    const std::vector<uint8_t> data = RandomTensor(type, n, rng, 4.0f);
    std::vector<float> want(n), got(n);
    Dequantize(type, data.data(), want.data(), n, Isa::kScalar);
    for (Isa isa : RunnableIsas()) {
      Dequantize(type, data.data(), got.data(), n, isa);
      for (int64_t i = 0; i < n; ++i) {
        ASSERT_EQ(Bits(got[i]), Bits(want[i])) << info.name << " " << IsaName(isa) << " " << i;
      }
    }
  }
}

// A few hand-made blocks, to pin the layout independently of the gguf comparison.
TEST(DequantizeTest, HandMadeBlocks) {
  uint8_t q4_1[20] = {};
  testing::PutHalf(q4_1, 0.5f);
  testing::PutHalf(q4_1 + 2, -1.0f);
  q4_1[4] = 0x3a;  // element 0 = 0xa, element 16 = 0x3
  uint8_t q8_0[34] = {};
  testing::PutHalf(q8_0, 0.25f);
  q8_0[2 + 5] = static_cast<uint8_t>(-12);
  for (Isa isa : RunnableIsas()) {
    float y[32];
    Dequantize(TensorType::kQ4_1, q4_1, y, 32, isa);
    EXPECT_EQ(y[0], 0.5f * 10 - 1.0f);
    EXPECT_EQ(y[16], 0.5f * 3 - 1.0f);
    EXPECT_EQ(y[1], -1.0f);
    Dequantize(TensorType::kQ8_0, q8_0, y, 32, isa);
    EXPECT_EQ(y[5], -3.0f);
    EXPECT_EQ(y[4], 0.0f);
  }
}

TEST(DequantizeTest, WeightRowIsTheRowsSlice) {
  std::mt19937 rng(3);
  const int64_t rows = 5, cols = 512;
  const TensorTypeInfo& info = GetTensorTypeInfo(TensorType::kQ4_K);
  const std::vector<uint8_t> data = RandomTensor(TensorType::kQ4_K, rows * cols, rng);
  WeightMatrix w{TensorType::kQ4_K, data.data(), rows, cols, RowBytes(info, cols)};
  std::vector<float> all(rows * cols), row(cols);
  Dequantize(TensorType::kQ4_K, data.data(), all.data(), rows * cols, Isa::kScalar);
  for (Isa isa : RunnableIsas()) {
    DequantizeWeightRow(w, 3, row.data(), isa);
    for (int64_t i = 0; i < cols; ++i) ASSERT_EQ(Bits(row[i]), Bits(all[3 * cols + i])) << i;
  }
}

}  // namespace
}  // namespace pdserve::kernels
