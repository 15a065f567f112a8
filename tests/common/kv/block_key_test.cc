#include "common/kv/block_key.h"

#include <numeric>
#include <set>
#include <vector>

#include <xxhash.h>

#include "gtest/gtest.h"

namespace pdserve::kv {
namespace {

std::vector<int32_t> Iota(int n, int32_t first) {
  std::vector<int32_t> v(n);
  std::iota(v.begin(), v.end(), first);
  return v;
}

TEST(BlockKeyTest, SeedIsTheDocumentedConstant) {
  EXPECT_EQ(kBlockKeySeed, 0x7064734B56303031ULL);  // "pdsKV001"
  EXPECT_EQ(kRootBlockKey, (BlockKey{0, 0}));
}

// The byte string of docs/kv-layout.md, built here by hand and hashed by calling xxHash directly,
// so what is checked is the documented layout, not the library's own packing.
TEST(BlockKeyTest, KnownAnswerFollowsTheDocumentedByteLayout) {
  const BlockKey parent{0x0123456789ABCDEFULL, 0xFEDCBA9876543210ULL};
  const std::vector<int32_t> tokens = {1, 258, -2, 0x7FFFFFFF};
  const uint8_t bytes[] = {
      0xEF, 0xCD, 0xAB, 0x89, 0x67, 0x45, 0x23, 0x01,  // parent.low, little-endian
      0x10, 0x32, 0x54, 0x76, 0x98, 0xBA, 0xDC, 0xFE,  // parent.high, little-endian
      0x01, 0x00, 0x00, 0x00,                          // 1
      0x02, 0x01, 0x00, 0x00,                          // 258
      0xFE, 0xFF, 0xFF, 0xFF,                          // -2 (two's complement)
      0xFF, 0xFF, 0xFF, 0x7F,                          // INT32_MAX
  };
  const XXH128_hash_t expected = XXH3_128bits_withSeed(bytes, sizeof(bytes), 0x7064734B56303031ULL);
  const BlockKey key = ChainBlockKey(parent, tokens);
  EXPECT_EQ(key.low, expected.low64);
  EXPECT_EQ(key.high, expected.high64);
}

TEST(BlockKeyTest, FirstBlockChainsFromSixteenZeroBytes) {
  const std::vector<int32_t> tokens = Iota(16, 100);
  std::vector<uint8_t> bytes(16, 0);
  for (int32_t t : tokens) {
    for (int i = 0; i < 4; ++i) bytes.push_back(static_cast<uint8_t>(uint32_t(t) >> (8 * i)));
  }
  const XXH128_hash_t expected =
      XXH3_128bits_withSeed(bytes.data(), bytes.size(), 0x7064734B56303031ULL);
  const std::vector<BlockKey> keys = FullBlockKeys(tokens, 16);
  ASSERT_EQ(keys.size(), 1u);
  EXPECT_EQ(keys[0], (BlockKey{expected.low64, expected.high64}));
}

// The example vectors of docs/kv-layout.md, computed independently with Python's `xxhash` 4.1.0
// (xxHash 0.8.4): xxh3_128_intdigest(bytes, seed=0x7064734B56303031). Keys must not change while
// kKvLayoutVersion is 1; an edit of the byte layout or seed, or an xxHash that changed XXH3,
// fails here.
TEST(BlockKeyTest, FrozenVectorsForVersionOne) {
  const std::vector<BlockKey> keys = FullBlockKeys(Iota(32, 0), 16);
  ASSERT_EQ(keys.size(), 2u);
  EXPECT_EQ(BlockKeyHex(keys[0]), "01021c19614389781de0d0a20b2e0ffe");
  EXPECT_EQ(BlockKeyHex(keys[1]), "53d97f567947e9ad3d9281cca53d759f");
}

TEST(BlockKeyTest, ChainingDistinguishesParents) {
  const std::vector<int32_t> block = Iota(16, 7);
  const BlockKey a = ChainBlockKey(kRootBlockKey, Iota(16, 0));
  const BlockKey b = ChainBlockKey(kRootBlockKey, Iota(16, 1));
  ASSERT_NE(a, b);
  EXPECT_NE(ChainBlockKey(a, block), ChainBlockKey(b, block));
  // The same block at the start of a sequence differs from the same block after a parent.
  EXPECT_NE(ChainBlockKey(kRootBlockKey, block), ChainBlockKey(a, block));
}

TEST(BlockKeyTest, EqualPrefixesGiveEqualKeys) {
  std::vector<int32_t> x = Iota(64, 1000);
  std::vector<int32_t> y = x;
  y[40] = 5;  // differs in block 2 (tokens [32, 48))
  y.push_back(9);
  const std::vector<BlockKey> kx = FullBlockKeys(x, 16);
  const std::vector<BlockKey> ky = FullBlockKeys(y, 16);
  ASSERT_EQ(kx.size(), 4u);
  ASSERT_EQ(ky.size(), 4u);
  EXPECT_EQ(kx[0], ky[0]);
  EXPECT_EQ(kx[1], ky[1]);
  EXPECT_NE(kx[2], ky[2]);
  EXPECT_NE(kx[3], ky[3]);  // same tokens in block 3, different parent
  // Chaining by hand gives the same keys.
  BlockKey parent = kRootBlockKey;
  for (size_t b = 0; b < kx.size(); ++b) {
    parent = ChainBlockKey(parent, absl::MakeConstSpan(x).subspan(b * 16, 16));
    EXPECT_EQ(parent, kx[b]);
  }
}

TEST(BlockKeyTest, OnlyFullBlocksGetKeys) {
  EXPECT_TRUE(FullBlockKeys({}, 16).empty());
  EXPECT_TRUE(FullBlockKeys(Iota(15, 0), 16).empty());
  EXPECT_EQ(FullBlockKeys(Iota(16, 0), 16).size(), 1u);
  EXPECT_EQ(FullBlockKeys(Iota(31, 0), 16).size(), 1u);
  EXPECT_EQ(FullBlockKeys(Iota(32, 0), 16).size(), 2u);
  // A partial tail does not change the full blocks' keys.
  EXPECT_EQ(FullBlockKeys(Iota(31, 0), 16), FullBlockKeys(Iota(16, 0), 16));
  EXPECT_EQ(FullBlockKeys(Iota(10, 0), 1).size(), 10u);
  EXPECT_TRUE(FullBlockKeys(Iota(10, 0), 0).empty());
  EXPECT_TRUE(FullBlockKeys(Iota(10, 0), -4).empty());
}

TEST(BlockKeyTest, BlockSizeChangesKeys) {
  const std::vector<int32_t> tokens = Iota(32, 0);
  EXPECT_NE(FullBlockKeys(tokens, 16).at(0), FullBlockKeys(tokens, 32).at(0));
}

TEST(BlockKeyTest, ManyBlocksNoCollisions) {
  std::set<std::pair<uint64_t, uint64_t>> seen;
  const std::vector<BlockKey> keys = FullBlockKeys(Iota(16 * 1000, 0), 16);
  for (const BlockKey& k : keys) EXPECT_TRUE(seen.insert({k.high, k.low}).second);
  for (int32_t t = 0; t < 1000; ++t) {
    const BlockKey k = ChainBlockKey(kRootBlockKey, std::vector<int32_t>(16, t));
    EXPECT_TRUE(seen.insert({k.high, k.low}).second);
  }
}

TEST(BlockKeyTest, HexIsHighThenLowLowercase) {
  EXPECT_EQ(BlockKeyHex(BlockKey{0x0123456789ABCDEFULL, 0xFEDCBA9876543210ULL}),
            "fedcba98765432100123456789abcdef");
  EXPECT_EQ(BlockKeyHex(kRootBlockKey), std::string(32, '0'));
  EXPECT_EQ(BlockKeyHex(BlockKey{1, 0}), "00000000000000000000000000000001");
  EXPECT_EQ(BlockKeyHex(BlockKey{0, 0xA}), "000000000000000a0000000000000000");
}

}  // namespace
}  // namespace pdserve::kv
