#include "common/kv/kv_block_pool.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <limits>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace pdserve::kv {
namespace {

[[noreturn]] void Die(const std::string& message) {
  std::fprintf(stderr, "KvBlockPool: %s\n", message.c_str());
  std::abort();
}

absl::Status CheckPoolArgs(const KvLayout& layout, int64_t n_blocks) {
  if (absl::Status s = layout.Validate(); !s.ok()) return s;
  if (n_blocks < 0 || n_blocks > std::numeric_limits<BlockId>::max()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "KV block pool: n_blocks is ", n_blocks, ", must be in [0, ",
        std::numeric_limits<BlockId>::max(), "]"));
  }
  const size_t block_bytes = layout.BlockBytes();
  if (n_blocks > 0 &&
      block_bytes > static_cast<size_t>(std::numeric_limits<int64_t>::max()) /
                        static_cast<size_t>(n_blocks)) {
    return absl::InvalidArgumentError(absl::StrCat("KV block pool: ", n_blocks, " blocks of ",
                                                   block_bytes, " bytes overflow"));
  }
  return absl::OkStatus();
}

}  // namespace

KvBlockPool::KvBlockPool(const KvLayout& layout, int64_t n_blocks)
    : KvBlockPool(layout, n_blocks, nullptr) {}

KvBlockPool::KvBlockPool(const KvLayout& layout, int64_t n_blocks,
                         std::unique_ptr<KvBlockStorage> storage)
    : layout_(layout), n_total_(n_blocks), storage_(std::move(storage)) {
  if (absl::Status s = CheckPoolArgs(layout, n_blocks); !s.ok()) Die(s.ToString());
  if (storage_ == nullptr) {
    storage_ = MakeHostKvStorage(static_cast<size_t>(n_blocks) * layout_.BlockBytes());
  }
  allocated_.assign(static_cast<size_t>(n_blocks), false);
  // A stack popped from the back: the first allocations get ids 0, 1, 2, ...
  free_list_.reserve(static_cast<size_t>(n_blocks));
  for (int64_t id = n_blocks - 1; id >= 0; --id) free_list_.push_back(static_cast<BlockId>(id));
}

absl::StatusOr<std::unique_ptr<KvBlockPool>> KvBlockPool::Create(const KvLayout& layout,
                                                                 int64_t n_blocks) {
  if (absl::Status s = CheckPoolArgs(layout, n_blocks); !s.ok()) return s;
  return std::make_unique<KvBlockPool>(layout, n_blocks);
}

absl::StatusOr<std::unique_ptr<KvBlockPool>> KvBlockPool::Create(
    const KvLayout& layout, int64_t n_blocks, std::unique_ptr<KvBlockStorage> storage) {
  if (absl::Status s = CheckPoolArgs(layout, n_blocks); !s.ok()) return s;
  if (storage == nullptr) return absl::InvalidArgumentError("KV block pool: no storage");
  const size_t want = static_cast<size_t>(n_blocks) * layout.BlockBytes();
  if (storage->size() != want) {
    return absl::InvalidArgumentError(absl::StrCat("KV block pool: storage holds ",
                                                   storage->size(), " bytes, ", n_blocks,
                                                   " blocks need ", want));
  }
  return std::unique_ptr<KvBlockPool>(new KvBlockPool(layout, n_blocks, std::move(storage)));
}

absl::StatusOr<std::vector<BlockId>> KvBlockPool::Allocate(int64_t n) {
  if (n < 0) {
    return absl::InvalidArgumentError(absl::StrCat("KV block pool: cannot allocate ", n,
                                                   " blocks"));
  }
  std::lock_guard<std::mutex> lock(mutex_);
  const int64_t n_free = static_cast<int64_t>(free_list_.size());
  if (n > n_free) {
    return absl::ResourceExhaustedError(absl::StrCat("KV block pool: requested ", n,
                                                     " blocks, ", n_free, " free of ", n_total_));
  }
  std::vector<BlockId> ids(free_list_.end() - n, free_list_.end());
  std::reverse(ids.begin(), ids.end());
  free_list_.resize(free_list_.size() - static_cast<size_t>(n));
  for (BlockId id : ids) allocated_[static_cast<size_t>(id)] = true;
  return ids;
}

absl::Status KvBlockPool::Free(absl::Span<const BlockId> ids) {
  std::lock_guard<std::mutex> lock(mutex_);
  // Plan: clear the flags one by one, so a repeated id in `ids` is seen as not allocated; on
  // any error restore the flags cleared so far, leaving the pool as it was.
  for (size_t i = 0; i < ids.size(); ++i) {
    const BlockId id = ids[i];
    absl::Status error;
    if (id < 0 || id >= n_total_) {
      error = absl::FailedPreconditionError(absl::StrCat(
          "KV block pool: free of unknown block ", id, " (pool has ", n_total_, " blocks)"));
    } else if (!allocated_[static_cast<size_t>(id)]) {
      bool repeated = false;
      for (size_t j = 0; j < i; ++j) repeated = repeated || ids[j] == id;
      error = absl::FailedPreconditionError(
          repeated ? absl::StrCat("KV block pool: block ", id, " listed twice in one free")
                   : absl::StrCat("KV block pool: block ", id,
                                  " is not allocated (double free)"));
    }
    if (!error.ok()) {
      for (size_t j = 0; j < i; ++j) allocated_[static_cast<size_t>(ids[j])] = true;
      return error;
    }
    allocated_[static_cast<size_t>(id)] = false;
  }
  // Apply.
  free_list_.insert(free_list_.end(), ids.rbegin(), ids.rend());
  return absl::OkStatus();
}

int64_t KvBlockPool::n_free() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return static_cast<int64_t>(free_list_.size());
}

bool KvBlockPool::IsAllocated(BlockId id) const {
  if (id < 0 || id >= n_total_) return false;
  std::lock_guard<std::mutex> lock(mutex_);
  return allocated_[static_cast<size_t>(id)];
}

uint8_t* KvBlockPool::BlockData(BlockId id) {
  if (id < 0 || id >= n_total_) {
    Die(absl::StrCat("BlockData(", id, ") out of [0, ", n_total_, ")"));
  }
  if (!on_host()) Die("BlockData on a pool in device memory: use ReadBlock/WriteBlock");
  return storage_->data() + static_cast<size_t>(id) * layout_.BlockBytes();
}

const uint8_t* KvBlockPool::BlockData(BlockId id) const {
  return const_cast<KvBlockPool*>(this)->BlockData(id);
}

absl::Status KvBlockPool::CheckBlockAccess(BlockId id, size_t bytes) const {
  if (id < 0 || id >= n_total_) {
    return absl::OutOfRangeError(
        absl::StrCat("KV block pool: block ", id, " is outside [0, ", n_total_, ")"));
  }
  if (bytes != layout_.BlockBytes()) {
    return absl::InvalidArgumentError(absl::StrCat("KV block pool: ", bytes,
                                                   " bytes given for a block of ",
                                                   layout_.BlockBytes()));
  }
  return absl::OkStatus();
}

absl::Status KvBlockPool::ReadBlock(BlockId id, absl::Span<uint8_t> out) const {
  if (absl::Status s = CheckBlockAccess(id, out.size()); !s.ok()) return s;
  return storage_->CopyToHost(static_cast<size_t>(id) * layout_.BlockBytes(), out);
}

absl::Status KvBlockPool::WriteBlock(BlockId id, absl::Span<const uint8_t> in) {
  if (absl::Status s = CheckBlockAccess(id, in.size()); !s.ok()) return s;
  return storage_->CopyFromHost(static_cast<size_t>(id) * layout_.BlockBytes(), in);
}

absl::Status KvBlockPool::ZeroBlock(BlockId id) {
  if (absl::Status s = CheckBlockAccess(id, layout_.BlockBytes()); !s.ok()) return s;
  return storage_->Zero(static_cast<size_t>(id) * layout_.BlockBytes(), layout_.BlockBytes());
}

template <typename SpanT>
absl::Status KvBlockPool::CheckBlocksAccess(absl::Span<const BlockId> ids,
                                            absl::Span<const SpanT> spans) const {
  if (ids.size() != spans.size()) {
    return absl::InvalidArgumentError(absl::StrCat("KV block pool: ", ids.size(), " block ids for ",
                                                   spans.size(), " buffers"));
  }
  for (size_t i = 0; i < ids.size(); ++i) {
    if (absl::Status s = CheckBlockAccess(ids[i], spans[i].size()); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status KvBlockPool::ReadBlocks(absl::Span<const BlockId> ids,
                                     absl::Span<const absl::Span<uint8_t>> out) const {
  if (absl::Status s = CheckBlocksAccess(ids, out); !s.ok()) return s;
  if (ids.empty()) return absl::OkStatus();
  return storage_->CopyBlocksToHost(ids, layout_.BlockBytes(), out);
}

absl::Status KvBlockPool::WriteBlocks(absl::Span<const BlockId> ids,
                                      absl::Span<const absl::Span<const uint8_t>> in) {
  if (absl::Status s = CheckBlocksAccess(ids, in); !s.ok()) return s;
  std::vector<BlockId> sorted(ids.begin(), ids.end());
  std::sort(sorted.begin(), sorted.end());
  if (auto dup = std::adjacent_find(sorted.begin(), sorted.end()); dup != sorted.end()) {
    return absl::InvalidArgumentError(
        absl::StrCat("KV block pool: block ", *dup, " is written twice in one WriteBlocks"));
  }
  if (ids.empty()) return absl::OkStatus();
  return storage_->CopyBlocksFromHost(ids, layout_.BlockBytes(), in);
}

}  // namespace pdserve::kv
