#include "common/kv_transfer/shm/shm_kv_storage.h"

#include <sys/stat.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "common/kv/kv_block_pool.h"
#include "common/kv/kv_layout.h"
#include "common/kv_transfer/shm/shared_memory_region.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace pdserve::kv_transfer {
namespace {

bool ShmExists(const std::string& name) {
  struct stat st;
  return stat(("/dev/shm" + name).c_str(), &st) == 0;
}

uint8_t Pattern(size_t block, size_t i) {
  return static_cast<uint8_t>((block * 151 + i * 13 + (i >> 9) + 1) & 0xff);
}

TEST(SharedMemoryKvStorageTest, IsHostAddressableZeroedAndNamed) {
  absl::StatusOr<std::unique_ptr<SharedMemoryKvStorage>> storage =
      SharedMemoryKvStorage::Create(5000);
  ASSERT_TRUE(storage.ok()) << storage.status();
  EXPECT_TRUE((*storage)->host_addressable());
  EXPECT_EQ((*storage)->size(), 5000u);
  EXPECT_THAT((*storage)->region_name(), ::testing::StartsWith("/pdserve-kv-"));
  EXPECT_TRUE(ShmExists((*storage)->region_name()));
  std::vector<uint8_t> out(5000, 0xff);
  ASSERT_TRUE((*storage)->CopyToHost(0, absl::MakeSpan(out)).ok());
  EXPECT_TRUE(std::all_of(out.begin(), out.end(), [](uint8_t b) { return b == 0; }));
}

TEST(SharedMemoryKvStorageTest, CopiesAndZeroReachTheSharedObject) {
  absl::StatusOr<std::unique_ptr<SharedMemoryKvStorage>> storage =
      SharedMemoryKvStorage::Create(1000);
  ASSERT_TRUE(storage.ok()) << storage.status();
  absl::StatusOr<SharedMemoryRegion> peer = SharedMemoryRegion::Open((*storage)->region_name());
  ASSERT_TRUE(peer.ok()) << peer.status();

  std::vector<uint8_t> in(300);
  for (size_t i = 0; i < in.size(); ++i) in[i] = Pattern(0, i);
  ASSERT_TRUE((*storage)->CopyFromHost(100, in).ok());
  EXPECT_TRUE(std::equal(in.begin(), in.end(), peer->data() + 100));
  ASSERT_TRUE((*storage)->Zero(150, 50).ok());
  EXPECT_TRUE(std::all_of(peer->data() + 150, peer->data() + 200, [](uint8_t b) { return b == 0; }));
  EXPECT_EQ(peer->data()[149], in[49]);
  EXPECT_EQ(peer->data()[200], in[100]);

  peer->data()[999] = 77;  // a write by the peer is what the storage reads
  std::vector<uint8_t> out(1);
  ASSERT_TRUE((*storage)->CopyToHost(999, absl::MakeSpan(out)).ok());
  EXPECT_EQ(out[0], 77);
}

TEST(SharedMemoryKvStorageTest, RangesPastTheEndAreOutOfRange) {
  absl::StatusOr<std::unique_ptr<kv::KvBlockStorage>> storage = MakeSharedMemoryKvStorage(64);
  ASSERT_TRUE(storage.ok()) << storage.status();
  std::vector<uint8_t> buf(8);
  EXPECT_EQ((*storage)->CopyToHost(60, absl::MakeSpan(buf)).code(),
            absl::StatusCode::kOutOfRange);
  EXPECT_EQ((*storage)->CopyFromHost(57, buf).code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ((*storage)->Zero(65, 0).code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ((*storage)->Zero(1, SIZE_MAX).code(), absl::StatusCode::kOutOfRange);
  EXPECT_TRUE((*storage)->CopyFromHost(56, buf).ok());
  EXPECT_TRUE((*storage)->Zero(64, 0).ok());
}

TEST(SharedMemoryKvStorageTest, ZeroBytesIsInvalidArgument) {
  EXPECT_EQ(MakeSharedMemoryKvStorage(0).status().code(), absl::StatusCode::kInvalidArgument);
}

class SharedMemoryPoolTest
    : public ::testing::TestWithParam<std::tuple<kernels::KvDtype, int>> {
 protected:
  static kv::KvLayout Layout() {
    kv::KvLayout layout;
    layout.n_layers = 3;
    layout.n_kv_heads = 2;
    layout.head_dim = 8;
    layout.dtype = std::get<0>(GetParam());
    layout.block_size = std::get<1>(GetParam());
    return layout;
  }
};

TEST_P(SharedMemoryPoolTest, BlocksRoundTripAndLiveAtTheirOffsetsInTheObject) {
  const kv::KvLayout layout = Layout();
  const size_t block_bytes = layout.BlockBytes();
  constexpr int64_t kBlocks = 8;
  absl::StatusOr<std::unique_ptr<SharedMemoryKvStorage>> storage =
      SharedMemoryKvStorage::Create(kBlocks * block_bytes);
  ASSERT_TRUE(storage.ok()) << storage.status();
  const std::string name = (*storage)->region_name();
  absl::StatusOr<std::unique_ptr<kv::KvBlockPool>> pool =
      kv::KvBlockPool::Create(layout, kBlocks, *std::move(storage));
  ASSERT_TRUE(pool.ok()) << pool.status();
  kv::KvBlockPool& p = **pool;
  EXPECT_TRUE(p.on_host());
  absl::StatusOr<SharedMemoryRegion> peer = SharedMemoryRegion::Open(name);
  ASSERT_TRUE(peer.ok()) << peer.status();
  ASSERT_EQ(peer->size(), kBlocks * block_bytes);

  absl::StatusOr<std::vector<kv::BlockId>> ids = p.Allocate(5);
  ASSERT_TRUE(ids.ok()) << ids.status();
  std::shuffle(ids->begin(), ids->end(), std::mt19937(11));
  std::vector<std::vector<uint8_t>> in(ids->size(), std::vector<uint8_t>(block_bytes));
  std::vector<absl::Span<const uint8_t>> in_spans;
  for (size_t k = 0; k < ids->size(); ++k) {
    for (size_t i = 0; i < block_bytes; ++i) in[k][i] = Pattern((*ids)[k], i);
    in_spans.emplace_back(in[k]);
  }
  ASSERT_TRUE(p.WriteBlocks(*ids, in_spans).ok());

  std::vector<std::vector<uint8_t>> out(ids->size(), std::vector<uint8_t>(block_bytes));
  std::vector<absl::Span<uint8_t>> out_spans;
  for (auto& o : out) out_spans.emplace_back(absl::MakeSpan(o));
  ASSERT_TRUE(p.ReadBlocks(*ids, out_spans).ok());
  for (size_t k = 0; k < ids->size(); ++k) {
    EXPECT_EQ(out[k], in[k]) << "block " << (*ids)[k];
    // docs/kv-layout.md: block b is at b × block_bytes of the pool's memory, here the object.
    EXPECT_TRUE(std::equal(in[k].begin(), in[k].end(),
                           peer->data() + static_cast<size_t>((*ids)[k]) * block_bytes))
        << "block " << (*ids)[k];
  }

  // A peer's in-place write of a whole block is what the pool reads back.
  const kv::BlockId target = (*ids)[2];
  for (size_t i = 0; i < block_bytes; ++i) {
    peer->data()[static_cast<size_t>(target) * block_bytes + i] = Pattern(target + 100, i);
  }
  std::vector<uint8_t> one(block_bytes);
  ASSERT_TRUE(p.ReadBlock(target, absl::MakeSpan(one)).ok());
  for (size_t i = 0; i < block_bytes; ++i) ASSERT_EQ(one[i], Pattern(target + 100, i)) << i;

  ASSERT_TRUE(p.ZeroBlock(target).ok());
  EXPECT_TRUE(std::all_of(peer->data() + static_cast<size_t>(target) * block_bytes,
                          peer->data() + static_cast<size_t>(target + 1) * block_bytes,
                          [](uint8_t b) { return b == 0; }));
  EXPECT_TRUE(p.Free(*ids).ok());
  EXPECT_EQ(p.n_free(), kBlocks);

  pool->reset();
  EXPECT_FALSE(ShmExists(name)) << "destroying the pool must unlink " << name;
}

INSTANTIATE_TEST_SUITE_P(
    DtypesAndBlockSizes, SharedMemoryPoolTest,
    ::testing::Combine(::testing::Values(kernels::KvDtype::kF32, kernels::KvDtype::kF16,
                                         kernels::KvDtype::kBF16),
                       ::testing::Values(16, 32)),
    [](const ::testing::TestParamInfo<std::tuple<kernels::KvDtype, int>>& info) {
      return kv::KvDtypeName(std::get<0>(info.param)) + "_block" +
             std::to_string(std::get<1>(info.param));
    });

}  // namespace
}  // namespace pdserve::kv_transfer
