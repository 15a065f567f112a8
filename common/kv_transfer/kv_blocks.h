#pragma once
// A KV block as the transfer layer moves it (docs/kv-transfer.md): its metadata (the header that
// every transport carries) apart from its bytes (docs/kv-layout.md), which travel by whatever
// path the transport has.

#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "common/kv/block_key.h"
#include "common/kv/kv_block_pool.h"

namespace pdserve::kv_transfer {

// What the receiver checks a block against.
struct KvBlockHeader {
  int64_t index = 0;      // block index in the sequence: positions [index × block_size, ...)
  int64_t n_tokens = 0;   // valid positions: block_size, or fewer for the last block
  uint64_t checksum = 0;  // BlockChecksum of the block's BlockBytes() bytes
};

// A block leaving the prefill worker. `bytes` are host bytes, valid during the call they are
// passed to.
struct OutgoingBlock {
  KvBlockHeader header;
  bool has_key = false;  // full blocks only
  kv::BlockKey key;
  kv::BlockId target = 0;  // the decode pool's block (KvHandoff.block_ids[index])
  absl::Span<const uint8_t> bytes;
};

// A block arriving with its bytes beside it (the gRPC transport). `bytes` valid during the call.
struct IncomingBlock {
  KvBlockHeader header;
  absl::Span<const uint8_t> bytes;
};

// XXH3-64 with seed 0: what every transport's checksum means.
uint64_t BlockChecksum(absl::Span<const uint8_t> bytes);
// Copies `src` into `dst` (same size) and returns BlockChecksum(src), reading `src` from memory
// once: each piece is hashed while it is in cache, then copied. For transports that copy block
// bytes themselves (shm): the checksum costs little more than the copy.
uint64_t CopyBlockWithChecksum(absl::Span<uint8_t> dst, absl::Span<const uint8_t> src);

// The 16 bytes of a key on the wire: low then high, each little-endian.
std::string BlockKeyBytes(const kv::BlockKey& key);

}  // namespace pdserve::kv_transfer
