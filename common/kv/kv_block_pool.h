#pragma once
// A fixed pool of KV blocks (layout in kv_layout.h) with exact accounting. Block metadata (ids,
// free list) is kept apart from the bytes, which live in a KvBlockStorage: host memory by
// default, device memory for the CUDA backend. Thread-safe (the accounting; two writers of one
// block's bytes are the caller's to order).

#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "common/kv/kv_block_storage.h"
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
  // A pool over `storage`, which must hold exactly n_blocks × layout.BlockBytes() bytes
  // (InvalidArgument otherwise). Its bytes are not cleared here.
  static absl::StatusOr<std::unique_ptr<KvBlockPool>> Create(
      const KvLayout& layout, int64_t n_blocks, std::unique_ptr<KvBlockStorage> storage);

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

  // The block's bytes (layout().BlockBytes() of them) in host memory. Preconditions (abort on
  // violation): 0 <= id < n_total() and on_host().
  uint8_t* BlockData(BlockId id);
  const uint8_t* BlockData(BlockId id) const;

  // Whether the bytes are host memory (BlockData works) or device memory.
  bool on_host() const { return storage_->host_addressable(); }
  // Address of block 0 in the storage's memory (a device address when !on_host()); block b
  // starts layout().BlockBytes() × b bytes after it.
  uint8_t* storage_data() { return storage_->data(); }

  // Copies one block's bytes to or from the host, or zeroes them; for host and device pools
  // alike. The span must be layout().BlockBytes() long (InvalidArgument otherwise); an id out
  // of [0, n_total()) is OutOfRange. Allocation state is not checked: the caller owns the block.
  absl::Status ReadBlock(BlockId id, absl::Span<uint8_t> out) const;
  absl::Status WriteBlock(BlockId id, absl::Span<const uint8_t> in);
  absl::Status ZeroBlock(BlockId id);

  // Several blocks at once (a chunk of a KV transfer): out[i] = block ids[i], or block ids[i] =
  // in[i]. One span per id (InvalidArgument otherwise), each BlockBytes() long; ids out of range
  // are OutOfRange; WriteBlocks' ids must be distinct (InvalidArgument). Nothing is copied when
  // a check fails. A device pool moves them in one transfer each way.
  absl::Status ReadBlocks(absl::Span<const BlockId> ids,
                          absl::Span<const absl::Span<uint8_t>> out) const;
  absl::Status WriteBlocks(absl::Span<const BlockId> ids,
                           absl::Span<const absl::Span<const uint8_t>> in);

 private:
  KvBlockPool(const KvLayout& layout, int64_t n_blocks, std::unique_ptr<KvBlockStorage> storage);
  absl::Status CheckBlockAccess(BlockId id, size_t bytes) const;
  // One span per id, and CheckBlockAccess for every (ids[i], spans[i].size()).
  template <typename SpanT>
  absl::Status CheckBlocksAccess(absl::Span<const BlockId> ids,
                                 absl::Span<const SpanT> spans) const;

  KvLayout layout_;
  int64_t n_total_;
  std::unique_ptr<KvBlockStorage> storage_;
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
