#pragma once
// The transfer layer's sender side for one sequence (docs/kv-transfer.md): the prefill worker
// computes blocks and hands them here chunk by chunk; this reads their bytes from the pool
// (in place on a host pool, through one staging copy on a device pool), makes their chained
// keys and checksums, and passes them to the stream's transport. Finish delivers the first
// token and returns what the transfer cost.
//
// Not thread-safe, except Cancel.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "common/kv/kv_block_pool.h"
#include "common/kv_transfer/handoff.h"
#include "common/kv_transfer/kv_send_stream.h"

namespace pdserve::kv_transfer {

struct TransferReport {
  std::string transport;
  int64_t bytes = 0;
  int64_t blocks = 0;
  double seconds = 0;  // first block handed over → completion acknowledged
};

// Blocks per chunk: at most `max_blocks`, and at most `max_bytes` of block data when that
// allows more than one block (a single larger block is still one chunk). At least 1.
int ChunkBlocks(const kv::KvLayout& layout, int max_blocks, size_t max_bytes);

class KvHandoffSender {
 public:
  // `pool` holds the sequence's blocks and outlives the sender; `prompt` is the whole prompt
  // (for the keys) and outlives it too; `handoff` was checked (CheckHandoff).
  KvHandoffSender(const kv::KvBlockPool& pool, const Handoff& handoff,
                  absl::Span<const int32_t> prompt, std::unique_ptr<KvSendStream> stream);

  // Sends blocks [first_block, end_block) of the sequence, whose bytes are final (their
  // positions computed): blocks must come in order, each once.
  absl::Status SendBlocks(const kv::BlockTable& table, int64_t first_block, int64_t end_block);
  // Every block sent: delivers the first token, waits for decode's acknowledgement.
  absl::StatusOr<TransferReport> Finish(int32_t first_token);
  // Thread-safe; see KvSendStream::Cancel.
  void Cancel() { stream_->Cancel(); }

  int64_t blocks_sent() const { return next_block_; }

 private:
  const kv::KvBlockPool& pool_;
  const Handoff& handoff_;
  const absl::Span<const int32_t> prompt_;
  const std::unique_ptr<KvSendStream> stream_;
  kv::BlockKey parent_ = kv::kRootBlockKey;
  int64_t next_block_ = 0;
  int64_t bytes_sent_ = 0;
  absl::Time first_send_ = absl::InfiniteFuture();
  std::vector<uint8_t> staging_;  // device pools: the chunk's bytes on the host
};

}  // namespace pdserve::kv_transfer
