#pragma once
// A fixed pool of KV blocks (layout in kv_layout.h) with exact accounting. Block metadata (ids,
// free list) is kept apart from the bytes. Thread-safe.

#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "common/kv/kv_layout.h"

namespace pdserve::kv {

using BlockId = int32_t;

class KvBlockPool {
 public:
  // Allocates n_blocks × layout.BlockBytes() bytes up front (zeroed). Preconditions (checked,
  // abort on violation): layout.Validate() is OK and 0 <= n_blocks <= INT32_MAX. Use Create() when
  // the layout or count comes from configuration.
  KvBlockPool(const KvLayout& layout, int64_t n_blocks);
  KvBlockPool(const KvBlockPool&) = delete;
  KvBlockPool& operator=(const KvBlockPool&) = delete;

  // As the constructor, with InvalidArgument instead of aborting on a bad layout or count.
  static absl::StatusOr<std::unique_ptr<KvBlockPool>> Create(const KvLayout& layout,
                                                             int64_t n_blocks);

  // All or nothing: n free blocks, or ResourceExhausted (nothing allocated) naming the counts.
  // n == 0 gives an empty vector; n < 0 is InvalidArgument. A block's bytes are not cleared on
  // allocation: positions not yet written hold stale data.
  absl::StatusOr<std::vector<BlockId>> Allocate(int64_t n);
  // Returns blocks to the pool. Freeing a block that is not allocated (double free), an id out
  // of [0, n_total()) or the same id twice in `ids` is a FailedPrecondition naming the id, and
  // frees none of `ids`.
  absl::Status Free(absl::Span<const BlockId> ids);

  int64_t n_free() const;
  int64_t n_allocated() const { return n_total_ - n_free(); }
  // False for ids out of range.
  bool IsAllocated(BlockId id) const;
  int64_t n_total() const { return n_total_; }
  const KvLayout& layout() const { return layout_; }

  // The block's bytes (layout().BlockBytes() of them). Precondition: 0 <= id < n_total().
  uint8_t* BlockData(BlockId id);
  const uint8_t* BlockData(BlockId id) const;

 private:
  KvLayout layout_;
  int64_t n_total_;
  std::unique_ptr<uint8_t[]> bytes_;
  mutable std::mutex mutex_;
  std::vector<BlockId> free_list_;   // guarded by mutex_
  std::vector<bool> allocated_;      // guarded by mutex_
};

// The blocks of one sequence in position order: position p lives in block_table[p / block_size].
struct BlockTable {
  std::vector<BlockId> blocks;
  int64_t n_tokens = 0;  // positions [0, n_tokens) hold valid K/V
};

}  // namespace pdserve::kv
