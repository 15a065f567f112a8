// kernels/cuda/dequantize.h against a plain-C++ transcription of ggml's dequantize_row_* loops:
// results must be bit-exact (f32 output) and exactly the reference rounded to bf16.

#include "kernels/cuda/dequantize.h"

#include <cstring>
#include <vector>

#include "gtest/gtest.h"
#include "tests/cuda/cuda_test_util.h"

namespace pdserve::kernels::gpu {
namespace {

using testing::DeviceBuffer;
using testing::FloatToBf16;
using testing::FloatToHalf;
using testing::HalfToFloat;
using testing::Rng;

struct TypeCase {
  TensorType type;
  const char* name;
  int block_elems;
  int block_bytes;
};

const TypeCase kTypes[] = {
    {TensorType::kF32, "f32", 1, 4},      {TensorType::kF16, "f16", 1, 2},
    {TensorType::kBF16, "bf16", 1, 2},    {TensorType::kQ4_0, "q4_0", 32, 18},
    {TensorType::kQ4_1, "q4_1", 32, 20},  {TensorType::kQ8_0, "q8_0", 32, 34},
    {TensorType::kQ4_K, "q4_k", 256, 144}, {TensorType::kQ6_K, "q6_k", 256, 210},
};

uint16_t Read16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}
void Write16(uint8_t* p, uint16_t v) { std::memcpy(p, &v, 2); }

// Random but finite data of n elements stored as `type`.
std::vector<uint8_t> RandomData(const TypeCase& t, int64_t n, Rng& rng) {
  const int64_t n_blocks = n / t.block_elems;
  std::vector<uint8_t> data(static_cast<size_t>(n_blocks * t.block_bytes));
  for (auto& b : data) b = rng.Byte();
  for (int64_t b = 0; b < n_blocks; ++b) {
    uint8_t* blk = data.data() + b * t.block_bytes;
    switch (t.type) {
      case TensorType::kF32: {
        const float f = rng.Uniform(-4.f, 4.f);
        std::memcpy(blk, &f, 4);
        break;
      }
      case TensorType::kF16: Write16(blk, FloatToHalf(rng.Uniform(-4.f, 4.f))); break;
      case TensorType::kBF16: Write16(blk, FloatToBf16(rng.Uniform(-4.f, 4.f))); break;
      case TensorType::kQ4_0:
      case TensorType::kQ8_0: Write16(blk, FloatToHalf(rng.Uniform(-0.05f, 0.05f))); break;
      case TensorType::kQ4_1:
        Write16(blk, FloatToHalf(rng.Uniform(0.f, 0.05f)));
        Write16(blk + 2, FloatToHalf(rng.Uniform(-0.5f, 0.f)));
        break;
      case TensorType::kQ4_K:
        Write16(blk, FloatToHalf(rng.Uniform(0.f, 0.01f)));
        Write16(blk + 2, FloatToHalf(rng.Uniform(0.f, 0.01f)));
        break;
      case TensorType::kQ6_K: Write16(blk + 208, FloatToHalf(rng.Uniform(-0.01f, 0.01f))); break;
      default: break;
    }
  }
  return data;
}

// ggml's dequantize_row_<type>, transcribed (f32 arithmetic, the same order).
std::vector<float> Reference(TensorType type, const std::vector<uint8_t>& data, int64_t n) {
  std::vector<float> y(static_cast<size_t>(n));
  const uint8_t* x = data.data();
  switch (type) {
    case TensorType::kF32:
      std::memcpy(y.data(), x, static_cast<size_t>(n) * 4);
      break;
    case TensorType::kF16:
      for (int64_t i = 0; i < n; ++i) y[i] = HalfToFloat(Read16(x + 2 * i));
      break;
    case TensorType::kBF16:
      for (int64_t i = 0; i < n; ++i) y[i] = testing::Bf16ToFloat(Read16(x + 2 * i));
      break;
    case TensorType::kQ4_0:
      for (int64_t i = 0; i < n / 32; ++i) {
        const uint8_t* b = x + i * 18;
        const float d = HalfToFloat(Read16(b));
        for (int j = 0; j < 16; ++j) {
          const int x0 = (b[2 + j] & 0x0F) - 8;
          const int x1 = (b[2 + j] >> 4) - 8;
          y[i * 32 + j] = x0 * d;
          y[i * 32 + j + 16] = x1 * d;
        }
      }
      break;
    case TensorType::kQ4_1:
      for (int64_t i = 0; i < n / 32; ++i) {
        const uint8_t* b = x + i * 20;
        const float d = HalfToFloat(Read16(b));
        const float m = HalfToFloat(Read16(b + 2));
        for (int j = 0; j < 16; ++j) {
          const int x0 = b[4 + j] & 0x0F;
          const int x1 = b[4 + j] >> 4;
          y[i * 32 + j] = x0 * d + m;
          y[i * 32 + j + 16] = x1 * d + m;
        }
      }
      break;
    case TensorType::kQ8_0:
      for (int64_t i = 0; i < n / 32; ++i) {
        const uint8_t* b = x + i * 34;
        const float d = HalfToFloat(Read16(b));
        for (int j = 0; j < 32; ++j) y[i * 32 + j] = static_cast<int8_t>(b[2 + j]) * d;
      }
      break;
    case TensorType::kQ4_K:
      for (int64_t i = 0; i < n / 256; ++i) {
        const uint8_t* b = x + i * 144;
        const float d = HalfToFloat(Read16(b));
        const float min = HalfToFloat(Read16(b + 2));
        const uint8_t* scales = b + 4;
        const uint8_t* q = b + 16;
        auto scale_min = [&](int j, uint8_t* sc, uint8_t* m) {
          if (j < 4) {
            *sc = scales[j] & 63;
            *m = scales[j + 4] & 63;
          } else {
            *sc = (scales[j + 4] & 0xF) | ((scales[j - 4] >> 6) << 4);
            *m = (scales[j + 4] >> 4) | ((scales[j - 0] >> 6) << 4);
          }
        };
        float* out = y.data() + i * 256;
        int is = 0;
        for (int j = 0; j < 256; j += 64) {
          uint8_t sc;
          uint8_t m;
          scale_min(is + 0, &sc, &m);
          const float d1 = d * sc;
          const float m1 = min * m;
          scale_min(is + 1, &sc, &m);
          const float d2 = d * sc;
          const float m2 = min * m;
          for (int l = 0; l < 32; ++l) *out++ = d1 * (q[l] & 0xF) - m1;
          for (int l = 0; l < 32; ++l) *out++ = d2 * (q[l] >> 4) - m2;
          q += 32;
          is += 2;
        }
      }
      break;
    case TensorType::kQ6_K:
      for (int64_t i = 0; i < n / 256; ++i) {
        const uint8_t* b = x + i * 210;
        const float d = HalfToFloat(Read16(b + 208));
        const uint8_t* ql = b;
        const uint8_t* qh = b + 128;
        const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192);
        float* out = y.data() + i * 256;
        for (int half = 0; half < 256; half += 128) {
          for (int l = 0; l < 32; ++l) {
            const int is = l / 16;
            const int8_t q1 = static_cast<int8_t>((ql[l + 0] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
            const int8_t q2 = static_cast<int8_t>((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
            const int8_t q3 = static_cast<int8_t>((ql[l + 0] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            const int8_t q4 = static_cast<int8_t>((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            out[l + 0] = d * sc[is + 0] * q1;
            out[l + 32] = d * sc[is + 2] * q2;
            out[l + 64] = d * sc[is + 4] * q3;
            out[l + 96] = d * sc[is + 6] * q4;
          }
          out += 128;
          ql += 64;
          qh += 32;
          sc += 8;
        }
      }
      break;
    default:
      ADD_FAILURE() << "no reference for type " << static_cast<int>(type);
  }
  return y;
}

uint32_t Bits(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  return b;
}

class DequantizeTest : public ::testing::TestWithParam<TypeCase> {};

TEST_P(DequantizeTest, BitExactToF32AndBf16) {
  const TypeCase t = GetParam();
  Rng rng(1234 + static_cast<uint32_t>(t.type));
  // An odd number of blocks, not a multiple of the thread-block size.
  const int64_t n = static_cast<int64_t>(t.block_elems) * (t.block_elems == 1 ? 1037 : 37);
  const std::vector<uint8_t> data = RandomData(t, n, rng);
  const std::vector<float> want = Reference(t.type, data, n);
  DeviceBuffer<uint8_t> src(data);
  DeviceBuffer<float> out_f32(static_cast<size_t>(n));
  DeviceBuffer<uint16_t> out_bf16(static_cast<size_t>(n));
  EXPECT_LAUNCH_OK(Dequantize(t.type, src.get(), n, ActDtype::kF32, out_f32.get(), nullptr));
  EXPECT_LAUNCH_OK(Dequantize(t.type, src.get(), n, ActDtype::kBF16, out_bf16.get(), nullptr));
  const std::vector<float> got_f32 = out_f32.Download();
  const std::vector<uint16_t> got_bf16 = out_bf16.Download();
  int n_bad = 0;
  for (int64_t i = 0; i < n && n_bad < 5; ++i) {
    if (Bits(got_f32[i]) != Bits(want[i]) || got_bf16[i] != FloatToBf16(want[i])) {
      ADD_FAILURE() << t.name << " element " << i << ": f32 got " << got_f32[i] << " want "
                    << want[i] << "; bf16 got 0x" << std::hex << got_bf16[i] << " want 0x"
                    << FloatToBf16(want[i]) << std::dec;
      ++n_bad;
    }
  }
}

TEST_P(DequantizeTest, EmbeddingLookupReadsRowsAndZeroesBadIds) {
  const TypeCase t = GetParam();
  Rng rng(99 + static_cast<uint32_t>(t.type));
  const int64_t vocab = 13;
  const int64_t dim = t.block_elems == 1 ? 72 : 2 * t.block_elems;
  const std::vector<uint8_t> table = RandomData(t, vocab * dim, rng);
  const std::vector<float> table_f32 = Reference(t.type, table, vocab * dim);
  const std::vector<int32_t> ids = {3, 0, 12, -1, 13, 7, 3};
  DeviceBuffer<uint8_t> d_table(table);
  DeviceBuffer<int32_t> d_ids(ids);
  DeviceBuffer<float> out(ids.size() * dim);
  DeviceBuffer<uint16_t> out_bf16(ids.size() * dim);
  const int n_tokens = static_cast<int>(ids.size());
  EXPECT_LAUNCH_OK(EmbeddingLookup(t.type, d_table.get(), vocab, dim, d_ids.get(), n_tokens,
                                   ActDtype::kF32, out.get(), nullptr));
  EXPECT_LAUNCH_OK(EmbeddingLookup(t.type, d_table.get(), vocab, dim, d_ids.get(), n_tokens,
                                   ActDtype::kBF16, out_bf16.get(), nullptr));
  const std::vector<float> got = out.Download();
  const std::vector<uint16_t> got_bf16 = out_bf16.Download();
  for (size_t k = 0; k < ids.size(); ++k) {
    const bool valid = ids[k] >= 0 && ids[k] < vocab;
    for (int64_t i = 0; i < dim; ++i) {
      const float want = valid ? table_f32[ids[k] * dim + i] : 0.0f;
      ASSERT_EQ(Bits(got[k * dim + i]), Bits(want)) << t.name << " token " << k << " dim " << i;
      ASSERT_EQ(got_bf16[k * dim + i], FloatToBf16(want)) << t.name << " token " << k;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllTypes, DequantizeTest, ::testing::ValuesIn(kTypes),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(DequantizeArgs, RejectsBadInputWithoutLaunching) {
  DeviceBuffer<uint8_t> buf(1024);
  DeviceBuffer<float> out(1024);
  EXPECT_FALSE(DequantizeSupported(TensorType::kQ5_0));
  EXPECT_REJECTED(Dequantize(TensorType::kQ5_0, buf.get(), 32, ActDtype::kF32, out.get(), nullptr));
  EXPECT_REJECTED(Dequantize(TensorType::kQ8_0, buf.get(), 33, ActDtype::kF32, out.get(), nullptr));
  EXPECT_REJECTED(Dequantize(TensorType::kQ8_0, nullptr, 32, ActDtype::kF32, out.get(), nullptr));
  EXPECT_REJECTED(Dequantize(TensorType::kF32, buf.get() + 2, 4, ActDtype::kF32, out.get(), nullptr));
  EXPECT_REJECTED(EmbeddingLookup(TensorType::kQ8_0, buf.get(), 0, 32, nullptr, 1,
                                  ActDtype::kF32, out.get(), nullptr));
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
}

}  // namespace
}  // namespace pdserve::kernels::gpu
