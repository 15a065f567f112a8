#include "common/kv/kv_block_pool.h"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <cstring>
#include <random>
#include <set>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace pdserve::kv {
namespace {

KvLayout SmallLayout() {
  KvLayout layout;
  layout.n_layers = 2;
  layout.n_kv_heads = 2;
  layout.head_dim = 4;
  layout.block_size = 4;
  return layout;
}

TEST(KvBlockPoolTest, StartsAllFree) {
  KvBlockPool pool(SmallLayout(), 10);
  EXPECT_EQ(pool.n_total(), 10);
  EXPECT_EQ(pool.n_free(), 10);
  EXPECT_EQ(pool.n_allocated(), 0);
  EXPECT_EQ(pool.layout(), SmallLayout());
}

TEST(KvBlockPoolTest, AllocateGivesDistinctIdsInRange) {
  KvBlockPool pool(SmallLayout(), 8);
  absl::StatusOr<std::vector<BlockId>> a = pool.Allocate(3);
  ASSERT_TRUE(a.ok()) << a.status();
  absl::StatusOr<std::vector<BlockId>> b = pool.Allocate(5);
  ASSERT_TRUE(b.ok()) << b.status();
  std::set<BlockId> ids(a->begin(), a->end());
  ids.insert(b->begin(), b->end());
  EXPECT_EQ(ids.size(), 8u);
  EXPECT_EQ(*ids.begin(), 0);
  EXPECT_EQ(*ids.rbegin(), 7);
  EXPECT_EQ(pool.n_free(), 0);
  for (BlockId id : ids) EXPECT_TRUE(pool.IsAllocated(id));
}

TEST(KvBlockPoolTest, AllocateZeroAndNegative) {
  KvBlockPool pool(SmallLayout(), 2);
  absl::StatusOr<std::vector<BlockId>> none = pool.Allocate(0);
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
  EXPECT_EQ(pool.Allocate(-1).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(pool.n_free(), 2);
}

TEST(KvBlockPoolTest, ExhaustionIsAllOrNothingAndNamesCounts) {
  KvBlockPool pool(SmallLayout(), 5);
  ASSERT_TRUE(pool.Allocate(3).ok());
  absl::StatusOr<std::vector<BlockId>> too_many = pool.Allocate(3);
  EXPECT_EQ(too_many.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(too_many.status().message().find("requested 3"), absl::string_view::npos)
      << too_many.status();
  EXPECT_NE(too_many.status().message().find("2 free"), absl::string_view::npos)
      << too_many.status();
  EXPECT_EQ(pool.n_free(), 2);
  EXPECT_TRUE(pool.Allocate(2).ok());
  EXPECT_EQ(pool.n_free(), 0);
  EXPECT_EQ(pool.Allocate(1).status().code(), absl::StatusCode::kResourceExhausted);
}

TEST(KvBlockPoolTest, DoubleFreeFailsAndFreesNothing) {
  KvBlockPool pool(SmallLayout(), 4);
  std::vector<BlockId> ids = *pool.Allocate(3);
  ASSERT_TRUE(pool.Free({ids[0]}).ok());
  EXPECT_EQ(pool.n_free(), 2);
  // ids[0] is already free: the whole call fails and ids[1], ids[2] stay allocated.
  absl::Status status = pool.Free({ids[1], ids[0], ids[2]});
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(status.message().find("double free"), absl::string_view::npos) << status;
  EXPECT_EQ(pool.n_free(), 2);
  EXPECT_TRUE(pool.IsAllocated(ids[1]));
  EXPECT_TRUE(pool.IsAllocated(ids[2]));
  EXPECT_FALSE(pool.IsAllocated(ids[0]));
}

TEST(KvBlockPoolTest, RepeatedIdInOneFreeFailsAndFreesNothing) {
  KvBlockPool pool(SmallLayout(), 4);
  std::vector<BlockId> ids = *pool.Allocate(2);
  absl::Status status = pool.Free({ids[0], ids[1], ids[0]});
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(status.message().find("twice"), absl::string_view::npos) << status;
  EXPECT_EQ(pool.n_free(), 2);
  EXPECT_TRUE(pool.IsAllocated(ids[0]));
  EXPECT_TRUE(pool.IsAllocated(ids[1]));
  EXPECT_TRUE(pool.Free(ids).ok());
  EXPECT_EQ(pool.n_free(), 4);
}

TEST(KvBlockPoolTest, UnknownIdFailsAndFreesNothing) {
  KvBlockPool pool(SmallLayout(), 4);
  std::vector<BlockId> ids = *pool.Allocate(2);
  for (BlockId bad : {-1, 4, 1000}) {
    absl::Status status = pool.Free({ids[0], bad});
    EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_NE(status.message().find("unknown block " + std::to_string(bad)),
              absl::string_view::npos)
        << status;
    EXPECT_EQ(pool.n_free(), 2);
    EXPECT_TRUE(pool.IsAllocated(ids[0]));
  }
  EXPECT_FALSE(pool.IsAllocated(-1));
  EXPECT_FALSE(pool.IsAllocated(4));
}

TEST(KvBlockPoolTest, RandomSequencesMatchAModel) {
  constexpr int64_t kBlocks = 64;
  std::mt19937 rng(12345);
  for (int round = 0; round < 20; ++round) {
    KvBlockPool pool(SmallLayout(), kBlocks);
    std::set<BlockId> model_allocated;
    std::vector<BlockId> held;
    for (int step = 0; step < 500; ++step) {
      const int action = std::uniform_int_distribution<int>(0, 9)(rng);
      if (action < 5) {
        const int64_t n = std::uniform_int_distribution<int64_t>(0, 20)(rng);
        absl::StatusOr<std::vector<BlockId>> got = pool.Allocate(n);
        const int64_t model_free = kBlocks - static_cast<int64_t>(model_allocated.size());
        if (n <= model_free) {
          ASSERT_TRUE(got.ok()) << got.status();
          ASSERT_EQ(static_cast<int64_t>(got->size()), n);
          for (BlockId id : *got) {
            ASSERT_TRUE(id >= 0 && id < kBlocks);
            ASSERT_TRUE(model_allocated.insert(id).second) << "block " << id << " handed out twice";
            held.push_back(id);
          }
        } else {
          ASSERT_EQ(got.status().code(), absl::StatusCode::kResourceExhausted);
        }
      } else if (action < 9) {
        if (held.empty()) continue;
        std::shuffle(held.begin(), held.end(), rng);
        const size_t n = std::uniform_int_distribution<size_t>(1, held.size())(rng);
        std::vector<BlockId> to_free(held.end() - n, held.end());
        held.resize(held.size() - n);
        ASSERT_TRUE(pool.Free(to_free).ok());
        for (BlockId id : to_free) model_allocated.erase(id);
      } else {
        // A bad free: a free id (double free) mixed with held ones; must change nothing.
        BlockId free_id = -1;
        for (BlockId id = 0; id < kBlocks; ++id) {
          if (!model_allocated.count(id)) free_id = id;
        }
        if (free_id < 0) continue;
        std::vector<BlockId> bad = held;
        bad.insert(bad.begin() + bad.size() / 2, free_id);
        ASSERT_EQ(pool.Free(bad).code(), absl::StatusCode::kFailedPrecondition);
      }
      ASSERT_EQ(pool.n_free(), kBlocks - static_cast<int64_t>(model_allocated.size()));
      ASSERT_EQ(pool.n_allocated(), static_cast<int64_t>(model_allocated.size()));
      for (BlockId id = 0; id < kBlocks; ++id) {
        ASSERT_EQ(pool.IsAllocated(id), model_allocated.count(id) == 1) << "block " << id;
      }
    }
  }
}

TEST(KvBlockPoolTest, ConcurrentAllocateAndFreeKeepExactAccounting) {
  constexpr int64_t kBlocks = 256;
  constexpr int kThreads = 8;
  KvBlockPool pool(SmallLayout(), kBlocks);
  // owner[id] is the thread holding the block, -1 when none: two threads holding one block at
  // once is a bug the pool must never allow.
  std::vector<std::atomic<int>> owner(kBlocks);
  for (auto& o : owner) o.store(-1);
  std::atomic<int> violations{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(t);
      std::vector<BlockId> held;
      for (int step = 0; step < 3000; ++step) {
        if (std::uniform_int_distribution<int>(0, 1)(rng) == 0) {
          absl::StatusOr<std::vector<BlockId>> got =
              pool.Allocate(std::uniform_int_distribution<int64_t>(1, 8)(rng));
          if (!got.ok()) {
            if (got.status().code() != absl::StatusCode::kResourceExhausted) ++violations;
            continue;
          }
          for (BlockId id : *got) {
            int expected = -1;
            if (!owner[id].compare_exchange_strong(expected, t)) ++violations;
            // Scribble on the block: a block handed to two threads would show as a data race.
            std::memset(pool.BlockData(id), t, pool.layout().BlockBytes());
            held.push_back(id);
          }
        } else if (!held.empty()) {
          const size_t n = std::uniform_int_distribution<size_t>(1, held.size())(rng);
          std::vector<BlockId> to_free(held.end() - n, held.end());
          held.resize(held.size() - n);
          for (BlockId id : to_free) {
            if (pool.BlockData(id)[0] != static_cast<uint8_t>(t)) ++violations;
            int expected = t;
            if (!owner[id].compare_exchange_strong(expected, -1)) ++violations;
          }
          if (!pool.Free(to_free).ok()) ++violations;
        }
      }
      for (BlockId id : held) owner[id].store(-1);
      if (!pool.Free(held).ok()) ++violations;
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(violations.load(), 0);
  EXPECT_EQ(pool.n_free(), kBlocks);
  absl::StatusOr<std::vector<BlockId>> all = pool.Allocate(kBlocks);
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(std::set<BlockId>(all->begin(), all->end()).size(), size_t(kBlocks));
}

TEST(KvBlockPoolTest, BlockDataIsDisjointAndSized) {
  const KvLayout layout = SmallLayout();
  KvBlockPool pool(layout, 6);
  const size_t block_bytes = layout.BlockBytes();
  for (BlockId id = 0; id < 6; ++id) {
    EXPECT_EQ(static_cast<size_t>(pool.BlockData(id) - pool.BlockData(0)), id * block_bytes);
    std::memset(pool.BlockData(id), 0x10 + id, block_bytes);
  }
  const KvBlockPool& const_pool = pool;
  for (BlockId id = 0; id < 6; ++id) {
    const uint8_t* data = const_pool.BlockData(id);
    for (size_t i = 0; i < block_bytes; ++i) ASSERT_EQ(data[i], 0x10 + id);
  }
}

TEST(KvBlockPoolTest, CreateRejectsBadArguments) {
  KvLayout bad = SmallLayout();
  bad.head_dim = 0;
  EXPECT_EQ(KvBlockPool::Create(bad, 4).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(KvBlockPool::Create(SmallLayout(), -1).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(KvBlockPool::Create(SmallLayout(), int64_t{1} << 40).status().code(),
            absl::StatusCode::kInvalidArgument);
  absl::StatusOr<std::unique_ptr<KvBlockPool>> ok = KvBlockPool::Create(SmallLayout(), 3);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ((*ok)->n_free(), 3);
}

TEST(KvBlockPoolTest, ReadWriteAndZeroBlocksThroughTheStorage) {
  KvBlockPool pool(SmallLayout(), 3);
  EXPECT_TRUE(pool.on_host());
  const size_t bytes = pool.layout().BlockBytes();
  std::vector<uint8_t> in(bytes), out(bytes, 0xee);
  for (size_t i = 0; i < bytes; ++i) in[i] = static_cast<uint8_t>(3 * i + 1);
  ASSERT_TRUE(pool.WriteBlock(1, in).ok());
  // The write went to block 1's bytes and nowhere else.
  EXPECT_EQ(std::memcmp(pool.BlockData(1), in.data(), bytes), 0);
  EXPECT_EQ(pool.BlockData(1), pool.storage_data() + bytes);
  ASSERT_TRUE(pool.ReadBlock(0, absl::MakeSpan(out)).ok());
  EXPECT_EQ(out, std::vector<uint8_t>(bytes, 0));
  ASSERT_TRUE(pool.ReadBlock(1, absl::MakeSpan(out)).ok());
  EXPECT_EQ(out, in);
  ASSERT_TRUE(pool.ZeroBlock(1).ok());
  ASSERT_TRUE(pool.ReadBlock(1, absl::MakeSpan(out)).ok());
  EXPECT_EQ(out, std::vector<uint8_t>(bytes, 0));

  EXPECT_EQ(pool.ReadBlock(3, absl::MakeSpan(out)).code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(pool.WriteBlock(-1, in).code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(pool.ZeroBlock(3).code(), absl::StatusCode::kOutOfRange);
  in.pop_back();
  EXPECT_EQ(pool.WriteBlock(0, in).code(), absl::StatusCode::kInvalidArgument);
}

// A storage that is not host-addressable (as the CUDA backend's device memory): the pool moves
// its bytes only through the storage's copies.
class FakeDeviceStorage final : public KvBlockStorage {
 public:
  explicit FakeDeviceStorage(size_t bytes) : host_(MakeHostKvStorage(bytes)) {}
  size_t size() const override { return host_->size(); }
  uint8_t* data() override { return host_->data(); }
  bool host_addressable() const override { return false; }
  absl::Status CopyToHost(size_t offset, absl::Span<uint8_t> out) const override {
    ++copies;
    return host_->CopyToHost(offset, out);
  }
  absl::Status CopyFromHost(size_t offset, absl::Span<const uint8_t> in) override {
    ++copies;
    return host_->CopyFromHost(offset, in);
  }
  absl::Status Zero(size_t offset, size_t bytes) override { return host_->Zero(offset, bytes); }
  mutable int copies = 0;

 private:
  std::unique_ptr<KvBlockStorage> host_;
};

TEST(KvBlockPoolTest, PoolOverAnotherStorage) {
  const size_t bytes = SmallLayout().BlockBytes();
  EXPECT_EQ(KvBlockPool::Create(SmallLayout(), 4, std::make_unique<FakeDeviceStorage>(3 * bytes))
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(KvBlockPool::Create(SmallLayout(), 4, nullptr).status().code(),
            absl::StatusCode::kInvalidArgument);
  auto storage = std::make_unique<FakeDeviceStorage>(4 * bytes);
  FakeDeviceStorage* fake = storage.get();
  absl::StatusOr<std::unique_ptr<KvBlockPool>> pool =
      KvBlockPool::Create(SmallLayout(), 4, std::move(storage));
  ASSERT_TRUE(pool.ok()) << pool.status();
  EXPECT_FALSE((*pool)->on_host());
  EXPECT_EQ((*pool)->storage_data(), fake->data());
  std::vector<uint8_t> in(bytes, 7), out(bytes);
  ASSERT_TRUE((*pool)->WriteBlock(3, in).ok());
  ASSERT_TRUE((*pool)->ReadBlock(3, absl::MakeSpan(out)).ok());
  EXPECT_EQ(out, in);
  EXPECT_EQ(fake->copies, 2);
  EXPECT_EQ(fake->data()[3 * bytes], 7);
  EXPECT_EQ(fake->data()[3 * bytes - 1], 0);
}

// Chunks of blocks (a KV transfer's unit): every id to or from its own buffer, in the order
// given; any bad id, buffer or repeated write target fails the call before a byte moves.
TEST(KvBlockPoolTest, ReadAndWriteSeveralBlocksAtOnce) {
  KvBlockPool pool(SmallLayout(), 6);
  const size_t bytes = pool.layout().BlockBytes();
  std::vector<std::vector<uint8_t>> data;
  for (int i = 0; i < 3; ++i) data.emplace_back(bytes, static_cast<uint8_t>(10 + i));
  const std::vector<BlockId> ids = {4, 0, 2};
  ASSERT_TRUE(pool.WriteBlocks(ids, {data[0], data[1], data[2]}).ok());
  EXPECT_EQ(pool.BlockData(4)[0], 10);
  EXPECT_EQ(pool.BlockData(0)[bytes - 1], 11);
  EXPECT_EQ(pool.BlockData(2)[0], 12);
  EXPECT_EQ(pool.BlockData(1)[0], 0);

  std::vector<uint8_t> a(bytes), b(bytes);
  ASSERT_TRUE(pool.ReadBlocks(std::vector<BlockId>{2, 4}, {absl::MakeSpan(a), absl::MakeSpan(b)})
                  .ok());
  EXPECT_EQ(a, data[2]);
  EXPECT_EQ(b, data[0]);
  EXPECT_TRUE(pool.ReadBlocks({}, {}).ok());

  const std::vector<uint8_t> other(bytes, 99), short_one(bytes - 1, 99);
  EXPECT_EQ(pool.WriteBlocks(std::vector<BlockId>{1, 1}, {other, other}).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(pool.WriteBlocks(std::vector<BlockId>{1, 6}, {other, other}).code(),
            absl::StatusCode::kOutOfRange);
  EXPECT_EQ(pool.WriteBlocks(std::vector<BlockId>{1, 3}, {other, short_one}).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(pool.WriteBlocks(std::vector<BlockId>{1, 3}, {other}).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(pool.BlockData(1)[0], 0) << "a failed WriteBlocks wrote block 1";
  EXPECT_EQ(pool.ReadBlocks(std::vector<BlockId>{-1}, {absl::MakeSpan(a)}).code(),
            absl::StatusCode::kOutOfRange);
}

// The default CopyBlocksToHost / CopyBlocksFromHost of a storage: its own copies, block by block.
TEST(KvBlockPoolTest, ChunksGoThroughTheStorageBlockByBlockByDefault) {
  const size_t bytes = SmallLayout().BlockBytes();
  auto storage = std::make_unique<FakeDeviceStorage>(4 * bytes);
  FakeDeviceStorage* fake = storage.get();
  absl::StatusOr<std::unique_ptr<KvBlockPool>> pool =
      KvBlockPool::Create(SmallLayout(), 4, std::move(storage));
  ASSERT_TRUE(pool.ok()) << pool.status();
  const std::vector<uint8_t> one(bytes, 1), two(bytes, 2);
  ASSERT_TRUE((*pool)->WriteBlocks(std::vector<BlockId>{3, 1}, {one, two}).ok());
  EXPECT_EQ(fake->copies, 2);
  EXPECT_EQ(fake->data()[3 * bytes], 1);
  EXPECT_EQ(fake->data()[1 * bytes], 2);
  std::vector<uint8_t> out(bytes);
  ASSERT_TRUE((*pool)->ReadBlocks(std::vector<BlockId>{1}, {absl::MakeSpan(out)}).ok());
  EXPECT_EQ(out, two);
  EXPECT_EQ(fake->copies, 3);
  // The storage checks ranges itself too (a storage is usable without a pool).
  EXPECT_EQ(fake->CopyBlocksToHost(std::vector<int32_t>{4}, bytes, {absl::MakeSpan(out)}).code(),
            absl::StatusCode::kOutOfRange);
}

TEST(KvBlockStorageTest, HostStorageChecksRanges) {
  std::unique_ptr<KvBlockStorage> s = MakeHostKvStorage(16);
  EXPECT_TRUE(s->host_addressable());
  std::vector<uint8_t> buf(8);
  EXPECT_TRUE(s->CopyToHost(8, absl::MakeSpan(buf)).ok());
  EXPECT_EQ(s->CopyToHost(9, absl::MakeSpan(buf)).code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(s->CopyFromHost(17, {}).code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(s->Zero(0, 17).code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(s->Zero(SIZE_MAX, 2).code(), absl::StatusCode::kOutOfRange);
}

TEST(KvBlockPoolDeathTest, ConstructorAndBlockDataCheckPreconditions) {
  KvLayout bad = SmallLayout();
  bad.n_layers = 0;
  EXPECT_DEATH(KvBlockPool(bad, 1), "n_layers");
  KvBlockPool pool(SmallLayout(), 2);
  EXPECT_DEATH(pool.BlockData(2), "out of");
  absl::StatusOr<std::unique_ptr<KvBlockPool>> device = KvBlockPool::Create(
      SmallLayout(), 1, std::make_unique<FakeDeviceStorage>(SmallLayout().BlockBytes()));
  ASSERT_TRUE(device.ok());
  EXPECT_DEATH((*device)->BlockData(0), "device memory");
}

}  // namespace
}  // namespace pdserve::kv
