#pragma once
// The wire format of the "tcp" KV transport (docs/kv-transfer.md). A connection carries batches
// from the prefill worker to the decode worker and one ack per batch back. All integers are
// little-endian.
//
// Batch (sender → receiver), version 1:
//   offset size
//   0      4    magic "PDKV"
//   4      2    version (kFrameVersion)
//   6      2    flags, 0 (a receiver refuses any other value)
//   8      16   transfer token (KvHandoff.transfer_token)
//   24     4    n_blocks, in [1, kMaxFrameBlocks]
//   28     8    block_bytes: must equal the receiver's KvLayout::BlockBytes()
//   36     16 × n_blocks entries, each:
//                 u32 index     block index in the sequence
//                 u32 n_tokens  valid positions in the block
//                 u64 checksum  BlockChecksum of the block's bytes
//   then n_blocks × block_bytes bytes: the blocks, in entry order, in the layout of
//   docs/kv-layout.md.
//
// Ack (receiver → sender), one per batch, in batch order:
//   0      4    status code (absl::StatusCode; 0 = the batch was verified and committed)
//   4      4    message length, at most kMaxAckMessageBytes
//   8      ...  message (UTF-8, no terminator)
//
// A receiver that refuses a batch (bad magic or version, a bound exceeded, a wrong token, a block
// that fails verification) answers it with an error ack and closes the connection; a batch is
// never partly committed.

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "common/kv_transfer/kv_blocks.h"

namespace pdserve::kv_transfer {

inline constexpr absl::string_view kFrameMagic = "PDKV";
inline constexpr uint16_t kFrameVersion = 1;
inline constexpr size_t kFramePrefixBytes = 36;
inline constexpr size_t kFrameEntryBytes = 16;
// Bounds what one batch pins and what its header costs to read (16 KiB); also IOV_MAX.
inline constexpr uint32_t kMaxFrameBlocks = 1024;
inline constexpr size_t kAckPrefixBytes = 8;
inline constexpr size_t kMaxAckMessageBytes = 4096;

// The fixed part of a batch header.
struct FramePrefix {
  std::string token;  // kTransferTokenBytes bytes
  uint32_t n_blocks = 0;
  uint64_t block_bytes = 0;
};

// The header of one batch (prefix and entries), to be followed by the blocks' bytes.
// Preconditions: `token` is kTransferTokenBytes long; 1 <= headers.size() <= kMaxFrameBlocks;
// every index and n_tokens is in [0, 2^32).
std::string EncodeFrameHeader(absl::string_view token, uint64_t block_bytes,
                              absl::Span<const KvBlockHeader> headers);

// The prefix of `bytes` (kFramePrefixBytes of them). InvalidArgument when the magic, version or
// flags are wrong: then nothing else in it can be trusted, the token included.
absl::StatusOr<FramePrefix> DecodeFramePrefix(absl::Span<const uint8_t> bytes);
// The prefix's bounds: n_blocks in [1, kMaxFrameBlocks] and block_bytes == `want_block_bytes`
// (InvalidArgument naming the value and the bound).
absl::Status CheckFramePrefix(const FramePrefix& prefix, size_t want_block_bytes);
// The entries in `bytes` (a multiple of kFrameEntryBytes). Their values are the receive
// session's to check.
std::vector<KvBlockHeader> DecodeFrameEntries(absl::Span<const uint8_t> bytes);

// The ack of a batch: `status`'s code and message (cut to kMaxAckMessageBytes).
std::string EncodeAck(const absl::Status& status);
struct AckPrefix {
  absl::StatusCode code = absl::StatusCode::kOk;
  uint32_t message_bytes = 0;
};
// The prefix of `bytes` (kAckPrefixBytes of them). InvalidArgument for an unknown code or a
// message longer than kMaxAckMessageBytes.
absl::StatusOr<AckPrefix> DecodeAckPrefix(absl::Span<const uint8_t> bytes);

}  // namespace pdserve::kv_transfer
