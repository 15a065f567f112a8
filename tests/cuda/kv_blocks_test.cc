// kernels/cuda/kv_blocks.h: StoreKv writes exactly the bytes a host conversion gives, in exactly
// the slots asked for (everything else untouched); GatherBlocks/ScatterBlocks move patterned
// bytes exactly. Tolerance: bit-exact.

#include "kernels/cuda/kv_blocks.h"

#include <algorithm>
#include <cstring>
#include <numeric>
#include <vector>

#include "gtest/gtest.h"
#include "tests/cuda/cuda_test_util.h"

namespace pdserve::kernels::gpu {
namespace {

using testing::DeviceBuffer;
using testing::Rng;

int ElemBytes(KvDtype d) { return d == KvDtype::kF32 ? 4 : 2; }

// The host encoding of value v as a KV element.
void EncodeKv(KvDtype d, float v, uint8_t* out) {
  if (d == KvDtype::kF32) {
    std::memcpy(out, &v, 4);
  } else {
    const uint16_t b = d == KvDtype::kF16 ? testing::FloatToHalf(v) : testing::FloatToBf16(v);
    std::memcpy(out, &b, 2);
  }
}

struct StoreCase {
  const char* name;
  KvDtype kv_dtype;
  ActDtype in_dtype;
  int block_size, n_kv_heads, head_dim, n_heads;
};

class StoreKvTest : public ::testing::TestWithParam<StoreCase> {};

TEST_P(StoreKvTest, SmallWritesTheSlotsAndNothingElse) {
  const StoreCase c = GetParam();
  Rng rng(7);
  const int n_layers = 3;
  const int layer = 1;
  const int64_t n_blocks = 40;  // at least 23 slots even with block_size 1
  PagedKvView kv = MakePagedKvView(nullptr, n_blocks, n_layers, layer, c.block_size,
                                   c.n_kv_heads, c.head_dim, c.kv_dtype);
  std::vector<uint8_t> pool(n_blocks * kv.block_bytes, 0xAB);
  DeviceBuffer<uint8_t> d_pool(pool);
  kv.pool = d_pool.get();

  // A fused QKV buffer: row t = q (n_heads) | k (n_kv_heads) | v (n_kv_heads) heads.
  const int n_tokens = 23;
  const int64_t kv_row = static_cast<int64_t>(c.n_kv_heads) * c.head_dim;
  const int64_t stride = static_cast<int64_t>(c.n_heads) * c.head_dim + 2 * kv_row;
  std::vector<float> values(n_tokens * stride);
  for (auto& v : values) {
    v = rng.Uniform(-3.f, 3.f);
    if (c.in_dtype == ActDtype::kBF16) v = testing::RoundBf16(v);
  }
  const int in_bytes = c.in_dtype == ActDtype::kF32 ? 4 : 2;
  std::vector<uint8_t> qkv(values.size() * in_bytes);
  for (size_t i = 0; i < values.size(); ++i) {
    if (c.in_dtype == ActDtype::kF32) {
      std::memcpy(&qkv[4 * i], &values[i], 4);
    } else {
      const uint16_t b = testing::FloatToBf16(values[i]);
      std::memcpy(&qkv[2 * i], &b, 2);
    }
  }
  // Distinct slots in random order, plus two that must be skipped.
  std::vector<int64_t> all(n_blocks * c.block_size);
  std::iota(all.begin(), all.end(), 0);
  std::shuffle(all.begin(), all.end(), rng.gen());
  std::vector<int64_t> slots(all.begin(), all.begin() + n_tokens);
  slots[5] = -1;
  slots[9] = n_blocks * c.block_size + 3;  // past the pool

  DeviceBuffer<uint8_t> d_qkv(qkv);
  DeviceBuffer<int64_t> d_slots(slots);
  const uint8_t* k = d_qkv.get() + static_cast<int64_t>(c.n_heads) * c.head_dim * in_bytes;
  const uint8_t* v = k + kv_row * in_bytes;
  EXPECT_LAUNCH_OK(StoreKv(k, v, c.in_dtype, stride, stride, n_tokens, d_slots.get(), kv,
                           nullptr));

  std::vector<uint8_t> want = pool;
  const int eb = ElemBytes(c.kv_dtype);
  for (int t = 0; t < n_tokens; ++t) {
    if (slots[t] < 0 || slots[t] >= n_blocks * c.block_size) continue;
    const int64_t block = slots[t] / c.block_size;
    const int64_t in_block = slots[t] % c.block_size;
    for (int64_t i = 0; i < kv_row; ++i) {
      const size_t at = block * kv.block_bytes + (in_block * kv_row + i) * eb;
      EncodeKv(c.kv_dtype, values[t * stride + c.n_heads * c.head_dim + i],
               &want[kv.k_offset_bytes + at]);
      EncodeKv(c.kv_dtype, values[t * stride + c.n_heads * c.head_dim + kv_row + i],
               &want[kv.v_offset_bytes + at]);
    }
  }
  const std::vector<uint8_t> got = d_pool.Download();
  ASSERT_EQ(got.size(), want.size());
  size_t first_diff = got.size();
  size_t n_diff = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (got[i] != want[i]) {
      if (first_diff == got.size()) first_diff = i;
      ++n_diff;
    }
  }
  EXPECT_EQ(n_diff, 0u) << "first differing pool byte " << first_diff << " (block "
                        << first_diff / kv.block_bytes << ", offset "
                        << first_diff % kv.block_bytes << ")";
}

INSTANTIATE_TEST_SUITE_P(
    Layouts, StoreKvTest,
    ::testing::Values(StoreCase{"bf16_from_bf16", KvDtype::kBF16, ActDtype::kBF16, 16, 3, 64, 9},
                      StoreCase{"f16_from_bf16", KvDtype::kF16, ActDtype::kBF16, 7, 2, 40, 6},
                      StoreCase{"f32_from_bf16", KvDtype::kF32, ActDtype::kBF16, 16, 1, 128, 8},
                      StoreCase{"bf16_from_f32", KvDtype::kBF16, ActDtype::kF32, 5, 3, 64, 3},
                      StoreCase{"f16_from_f32", KvDtype::kF16, ActDtype::kF32, 16, 4, 8, 4},
                      StoreCase{"f32_from_f32", KvDtype::kF32, ActDtype::kF32, 1, 2, 16, 2}),
    [](const auto& info) { return std::string(info.param.name); });

// ---- Block gather / scatter ------------------------------------------------------------------

void CheckGatherScatter(size_t block_bytes) {
  SCOPED_TRACE(::testing::Message() << "block_bytes " << block_bytes);
  const int64_t n_blocks = 20;
  std::vector<uint8_t> pool(n_blocks * block_bytes);
  for (size_t i = 0; i < pool.size(); ++i) {
    pool[i] = static_cast<uint8_t>((i / block_bytes) * 37 + i * 11 + (i >> 8));  // patterned
  }
  const std::vector<int32_t> ids = {7, 3, 19, 0, -1, 20, 3, 12};  // -1, 20: out of range
  DeviceBuffer<uint8_t> d_pool(pool);
  DeviceBuffer<int32_t> d_ids(ids);
  std::vector<uint8_t> staging(ids.size() * block_bytes, 0xCD);
  DeviceBuffer<uint8_t> d_staging(staging);
  EXPECT_LAUNCH_OK(GatherBlocks(d_pool.get(), n_blocks, block_bytes, d_ids.get(),
                                static_cast<int>(ids.size()), d_staging.get(), nullptr));
  const std::vector<uint8_t> got = d_staging.Download();
  for (size_t i = 0; i < ids.size(); ++i) {
    const bool valid = ids[i] >= 0 && ids[i] < n_blocks;
    for (size_t b = 0; b < block_bytes; ++b) {
      const uint8_t want = valid ? pool[ids[i] * block_bytes + b] : 0xCD;
      ASSERT_EQ(got[i * block_bytes + b], want) << "staging block " << i << " byte " << b;
    }
  }

  // Scatter staging blocks 0..3 into other, distinct blocks of a second pool.
  const std::vector<int32_t> dst_ids = {1, 18, -5, 9};
  std::vector<uint8_t> pool2(n_blocks * block_bytes, 0x11);
  DeviceBuffer<uint8_t> d_pool2(pool2);
  DeviceBuffer<int32_t> d_dst_ids(dst_ids);
  EXPECT_LAUNCH_OK(ScatterBlocks(d_staging.get(), n_blocks, block_bytes, d_dst_ids.get(),
                                 static_cast<int>(dst_ids.size()), d_pool2.get(), nullptr));
  std::vector<uint8_t> want2 = pool2;
  for (size_t i = 0; i < dst_ids.size(); ++i) {
    if (dst_ids[i] < 0 || dst_ids[i] >= n_blocks) continue;
    std::memcpy(&want2[dst_ids[i] * block_bytes], &got[i * block_bytes], block_bytes);
  }
  EXPECT_TRUE(d_pool2.Download() == want2) << "scattered pool differs";
}

// One layer's K and V slabs of each block (layer-wise streaming): a byte range.
TEST(BlockTransferTest, SmallGatherScatterOneLayer) {
  const int n_layers = 3;
  const PagedKvView kv = MakePagedKvView(nullptr, 0, n_layers, 1, 16, 3, 64, KvDtype::kBF16);
  const size_t slab = kv.v_offset_bytes - kv.k_offset_bytes;
  const BlockByteRange range{kv.k_offset_bytes, 2 * slab};
  const int64_t n_blocks = 6;
  std::vector<uint8_t> pool(n_blocks * kv.block_bytes);
  for (size_t i = 0; i < pool.size(); ++i) pool[i] = static_cast<uint8_t>(i * 7 + (i >> 9));
  const std::vector<int32_t> ids = {4, 1, 5};
  DeviceBuffer<uint8_t> d_pool(pool);
  DeviceBuffer<int32_t> d_ids(ids);
  DeviceBuffer<uint8_t> d_staging(ids.size() * range.bytes);
  EXPECT_LAUNCH_OK(GatherBlocks(d_pool.get(), n_blocks, kv.block_bytes, d_ids.get(),
                                static_cast<int>(ids.size()), d_staging.get(), nullptr, range));
  const std::vector<uint8_t> staging = d_staging.Download();
  for (size_t i = 0; i < ids.size(); ++i) {
    ASSERT_EQ(0, std::memcmp(&staging[i * range.bytes],
                             &pool[ids[i] * kv.block_bytes + range.offset], range.bytes))
        << "staging slot " << i;
  }
  // Scatter into a zeroed pool: exactly the ranges of the target blocks change.
  const std::vector<int32_t> dst_ids = {0, 2, 3};
  DeviceBuffer<uint8_t> d_pool2(std::vector<uint8_t>(pool.size(), 0));
  DeviceBuffer<int32_t> d_dst_ids(dst_ids);
  EXPECT_LAUNCH_OK(ScatterBlocks(d_staging.get(), n_blocks, kv.block_bytes, d_dst_ids.get(),
                                 static_cast<int>(dst_ids.size()), d_pool2.get(), nullptr, range));
  std::vector<uint8_t> want(pool.size(), 0);
  for (size_t i = 0; i < dst_ids.size(); ++i) {
    std::memcpy(&want[dst_ids[i] * kv.block_bytes + range.offset], &staging[i * range.bytes],
                range.bytes);
  }
  EXPECT_TRUE(d_pool2.Download() == want);
  // A range past the block is rejected.
  EXPECT_REJECTED(GatherBlocks(d_pool.get(), n_blocks, kv.block_bytes, d_ids.get(), 1,
                               d_staging.get(), nullptr,
                               BlockByteRange{kv.block_bytes - 16, 32}));
}

TEST(BlockTransferTest, SmallGatherScatterAlignedBlocks) { CheckGatherScatter(24576); }
TEST(BlockTransferTest, SmallGatherScatterOddBlocks) { CheckGatherScatter(1001); }
TEST(BlockTransferTest, SmallGatherScatterTinyBlocks) { CheckGatherScatter(16); }

TEST(KvBlocksArgs, RejectsBadInputWithoutLaunching) {
  DeviceBuffer<uint8_t> buf(4096);
  DeviceBuffer<int64_t> slots(4);
  DeviceBuffer<int32_t> ids(4);
  PagedKvView kv = MakePagedKvView(buf.get(), 1, 1, 0, 16, 1, 64, KvDtype::kBF16);
  EXPECT_REJECTED(StoreKv(buf.get(), buf.get(), ActDtype::kBF16, 32, 64, 1, slots.get(), kv,
                          nullptr));  // stride < row
  kv.block_size = 0;
  EXPECT_REJECTED(StoreKv(buf.get(), buf.get(), ActDtype::kBF16, 64, 64, 1, slots.get(), kv,
                          nullptr));
  EXPECT_REJECTED(GatherBlocks(buf.get(), 1, 0, ids.get(), 1, buf.get(), nullptr));
  EXPECT_REJECTED(ScatterBlocks(buf.get(), 1, 16, nullptr, 1, buf.get(), nullptr));
  EXPECT_EQ(GatherBlocks(buf.get(), 1, 16, ids.get(), 0, buf.get(), nullptr), cudaSuccess);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
}

}  // namespace
}  // namespace pdserve::kernels::gpu
