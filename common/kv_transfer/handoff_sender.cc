#include "common/kv_transfer/handoff_sender.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace pdserve::kv_transfer {

int ChunkBlocks(const kv::KvLayout& layout, int max_blocks, size_t max_bytes) {
  const size_t block_bytes = layout.BlockBytes();
  const int by_bytes = static_cast<int>(std::max<size_t>(1, max_bytes / block_bytes));
  return std::max(1, std::min(max_blocks, by_bytes));
}

KvHandoffSender::KvHandoffSender(const kv::KvBlockPool& pool, const Handoff& handoff,
                                 absl::Span<const int32_t> prompt,
                                 std::unique_ptr<KvSendStream> stream)
    : pool_(pool), handoff_(handoff), prompt_(prompt), stream_(std::move(stream)) {}

absl::Status KvHandoffSender::SendBlocks(const kv::BlockTable& table, int64_t first_block,
                                         int64_t end_block) {
  const kv::KvLayout& layout = pool_.layout();
  const int64_t block_size = layout.block_size;
  const size_t block_bytes = layout.BlockBytes();
  const int64_t n_prompt = static_cast<int64_t>(prompt_.size());
  if (first_block != next_block_ || end_block < first_block ||
      end_block > static_cast<int64_t>(handoff_.target_blocks.size()) ||
      end_block > static_cast<int64_t>(table.blocks.size())) {
    return absl::InternalError(absl::StrCat("request ", handoff_.request_id, ": blocks [",
                                            first_block, ", ", end_block,
                                            ") sent out of order (next is ", next_block_, ")"));
  }
  const size_t n = static_cast<size_t>(end_block - first_block);
  std::vector<absl::Span<const uint8_t>> bytes(n);
  if (pool_.on_host()) {
    for (size_t i = 0; i < n; ++i) {
      bytes[i] = absl::MakeConstSpan(pool_.BlockData(table.blocks[first_block + i]), block_bytes);
    }
  } else {
    // One gather and one crossing of the bus for the chunk.
    staging_.resize(n * block_bytes);
    std::vector<kv::BlockId> sources(table.blocks.begin() + first_block,
                                     table.blocks.begin() + end_block);
    std::vector<absl::Span<uint8_t>> out(n);
    for (size_t i = 0; i < n; ++i) {
      out[i] = absl::MakeSpan(staging_.data() + i * block_bytes, block_bytes);
      bytes[i] = out[i];
    }
    if (absl::Status s = pool_.ReadBlocks(sources, out); !s.ok()) return s;
  }
  std::vector<OutgoingBlock> blocks(n);
  for (size_t i = 0; i < n; ++i) {
    const int64_t b = first_block + static_cast<int64_t>(i);
    OutgoingBlock& block = blocks[i];
    block.header.index = b;
    block.header.n_tokens = std::min<int64_t>(block_size, n_prompt - b * block_size);
    if (!stream_->computes_checksums()) block.header.checksum = BlockChecksum(bytes[i]);
    if (block.header.n_tokens == block_size) {
      parent_ = kv::ChainBlockKey(parent_, prompt_.subspan(b * block_size, block_size));
      block.has_key = true;
      block.key = parent_;
    }
    block.target = handoff_.target_blocks[b];
    block.bytes = bytes[i];
  }
  if (first_send_ == absl::InfiniteFuture()) first_send_ = absl::Now();
  if (absl::Status s = stream_->SendBlocks(blocks); !s.ok()) return s;
  next_block_ = end_block;
  bytes_sent_ += static_cast<int64_t>(n * block_bytes);
  return absl::OkStatus();
}

absl::StatusOr<TransferReport> KvHandoffSender::Finish(int32_t first_token) {
  if (next_block_ != static_cast<int64_t>(handoff_.target_blocks.size())) {
    return absl::InternalError(absl::StrCat("request ", handoff_.request_id, ": finished after ",
                                            next_block_, " of ", handoff_.target_blocks.size(),
                                            " blocks"));
  }
  if (first_send_ == absl::InfiniteFuture()) first_send_ = absl::Now();
  if (absl::Status s = stream_->Finish(first_token); !s.ok()) return s;
  TransferReport report;
  report.transport = std::string(stream_->transport());
  report.bytes = bytes_sent_;
  report.blocks = next_block_;
  report.seconds = absl::ToDoubleSeconds(absl::Now() - first_send_);
  return report;
}

}  // namespace pdserve::kv_transfer
