// PagedAttention against a naive attention over contiguous K and V, with the sequence's blocks
// scattered in shuffled order through a slab pool, for every KV dtype and several GQA ratios.

#include "kernels/cpu/paged_attention.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/dequantize.h"
#include "tests/kernels/kernel_test_util.h"

namespace pdserve::kernels {
namespace {

using testing::RandomFloats;

// What the cache holds after StoreKv: the value rounded to the dtype.
float RoundToDtype(float v, KvDtype dtype) {
  switch (dtype) {
    case KvDtype::kF32:
      return v;
    case KvDtype::kF16:
      return F16ToF32(F32ToF16(v));
    case KvDtype::kBF16:
      return Bf16ToF32(F32ToBf16(v));
  }
  return v;
}

struct Case {
  int n_heads, n_kv_heads, head_dim, block_size;
  int64_t n_ctx;
};

void CheckCase(const Case& c, KvDtype dtype, Isa isa, std::mt19937& rng) {
  const int kv_width = c.n_kv_heads * c.head_dim;
  const std::vector<float> keys = RandomFloats(c.n_ctx * kv_width, rng);
  const std::vector<float> values = RandomFloats(c.n_ctx * kv_width, rng);
  std::vector<float> q = RandomFloats(c.n_heads * c.head_dim, rng);
  for (float& v : q) v *= 3.0f;  // sharper attention than uniform

  // A pool of slabs, twice as many as needed; the sequence gets a shuffled subset of them.
  const int64_t n_blocks = (c.n_ctx + c.block_size - 1) / c.block_size;
  const size_t k_bytes = static_cast<size_t>(c.block_size) * kv_width * KvDtypeBytes(dtype);
  const size_t slab_bytes = 2 * k_bytes + 64;  // K, then V at v_offset_bytes, then padding
  std::vector<uint8_t> pool(static_cast<size_t>(2 * n_blocks) * slab_bytes, 0xAB);
  std::vector<int64_t> order(2 * n_blocks);
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), rng);
  std::vector<uint8_t*> slabs(n_blocks);
  std::vector<const uint8_t*> const_slabs(n_blocks);
  for (int64_t b = 0; b < n_blocks; ++b) {
    slabs[b] = pool.data() + order[b] * slab_bytes;
    const_slabs[b] = slabs[b];
  }
  PagedKvLayer kv;
  kv.k_slabs = const_slabs.data();
  kv.v_offset_bytes = k_bytes + 32;
  kv.block_size = c.block_size;
  kv.n_kv_heads = c.n_kv_heads;
  kv.head_dim = c.head_dim;
  kv.dtype = dtype;
  for (int64_t p = 0; p < c.n_ctx; ++p) {
    StoreKv(keys.data() + p * kv_width, values.data() + p * kv_width, p, kv, slabs.data());
  }

  // Two calls over split head ranges, as callers parallelise over heads: the same bits as one
  // call over all heads, and nothing written past the heads.
  const float kSentinel = 12345.0f;
  std::vector<float> out(c.n_heads * c.head_dim + 1, kSentinel), scores(c.n_ctx);
  const int split = c.n_heads / 2;
  PagedAttention(q.data(), c.n_heads, kv, c.n_ctx, 0, split, scores.data(), out.data(), isa);
  PagedAttention(q.data(), c.n_heads, kv, c.n_ctx, split, c.n_heads, scores.data(), out.data(), isa);
  EXPECT_EQ(out.back(), kSentinel);
  std::vector<float> whole(c.n_heads * c.head_dim);
  PagedAttention(q.data(), c.n_heads, kv, c.n_ctx, 0, c.n_heads, scores.data(), whole.data(), isa);
  for (size_t i = 0; i < whole.size(); ++i) ASSERT_EQ(testing::Bits(whole[i]), testing::Bits(out[i])) << i;

  const int group = c.n_heads / c.n_kv_heads;
  for (int h = 0; h < c.n_heads; ++h) {
    const int kvh = h / group;
    std::vector<double> s(c.n_ctx);
    double max_s = -1e300;
    for (int64_t p = 0; p < c.n_ctx; ++p) {
      double dot = 0;
      for (int i = 0; i < c.head_dim; ++i) {
        dot += static_cast<double>(q[h * c.head_dim + i]) *
               RoundToDtype(keys[p * kv_width + kvh * c.head_dim + i], dtype);
      }
      s[p] = dot / std::sqrt(static_cast<double>(c.head_dim));
      max_s = std::max(max_s, s[p]);
    }
    double sum = 0;
    for (double& v : s) sum += (v = std::exp(v - max_s));
    for (int i = 0; i < c.head_dim; ++i) {
      double want = 0;
      for (int64_t p = 0; p < c.n_ctx; ++p) {
        want += s[p] / sum * RoundToDtype(values[p * kv_width + kvh * c.head_dim + i], dtype);
      }
      ASSERT_NEAR(out[h * c.head_dim + i], want, 2e-5)
          << IsaName(isa) << " dtype " << static_cast<int>(dtype) << " heads " << c.n_heads << "/" << c.n_kv_heads
          << " n_ctx " << c.n_ctx << " head " << h << " dim " << i;
    }
  }
}

TEST(PagedAttentionTest, MatchesContiguousReference) {
  std::mt19937 rng(5);
  const Case cases[] = {
      {4, 4, 16, 16, 37},  // GQA ratio 1
      {9, 3, 64, 16, 50},  // ratio 3, n_ctx not a multiple of block_size
      {8, 1, 32, 8, 1},    // ratio 8, a single position
      {16, 2, 64, 32, 300},
      {2, 2, 8, 4, 16},    // exactly full blocks
      {6, 2, 12, 5, 23},   // head_dim not a multiple of 8
      {4, 1, 136, 16, 40}, // head_dim past one 64-wide chunk
  };
  for (Isa isa : testing::RunnableIsas()) {
    for (KvDtype dtype : {KvDtype::kF32, KvDtype::kF16, KvDtype::kBF16}) {
      for (const Case& c : cases) CheckCase(c, dtype, isa, rng);
    }
  }
}

TEST(PagedAttentionTest, StoreKvConvertsWithRoundToNearestEven) {
  const int head_dim = 4;
  std::vector<uint8_t> slab(2 * 2 * head_dim * 2, 0);
  uint8_t* slabs[] = {slab.data()};
  const uint8_t* const_slabs[] = {slab.data()};
  PagedKvLayer kv{const_slabs, 2 * head_dim * 2, 2, 1, head_dim, KvDtype::kBF16};
  const float k[head_dim] = {1.0f + std::ldexp(1.0f, -8), 1.0f + 3 * std::ldexp(1.0f, -8), -2.0f, 0.0f};
  const float v[head_dim] = {0.5f, 0.25f, 0.125f, 3.0f};
  StoreKv(k, v, 1, kv, slabs);
  uint16_t stored[head_dim];
  std::memcpy(stored, slab.data() + head_dim * 2, sizeof(stored));  // position 1 of the block
  EXPECT_EQ(stored[0], 0x3f80);
  EXPECT_EQ(stored[1], 0x3f82);
  EXPECT_EQ(stored[2], 0xc000);
  std::memcpy(stored, slab.data() + kv.v_offset_bytes + head_dim * 2, sizeof(stored));
  EXPECT_EQ(stored[3], 0x4040);
}

TEST(PagedAttentionTest, DtypeBytes) {
  EXPECT_EQ(KvDtypeBytes(KvDtype::kF32), 4);
  EXPECT_EQ(KvDtypeBytes(KvDtype::kF16), 2);
  EXPECT_EQ(KvDtypeBytes(KvDtype::kBF16), 2);
}

}  // namespace
}  // namespace pdserve::kernels
