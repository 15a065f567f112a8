#pragma once
// The 128-bit key of a full KV block (docs/kv-layout.md): a hash chained over the parent block's
// key and this block's token ids, so equal keys mean equal prefixes.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/types/span.h"

namespace pdserve::kv {

struct BlockKey {
  uint64_t low = 0;
  uint64_t high = 0;
  friend bool operator==(const BlockKey&, const BlockKey&) = default;
};

// The parent of a sequence's first block.
inline constexpr BlockKey kRootBlockKey{};

BlockKey ChainBlockKey(const BlockKey& parent, absl::Span<const int32_t> block_tokens);

// Keys of the full blocks of `tokens` (a partial last block gets none).
std::vector<BlockKey> FullBlockKeys(absl::Span<const int32_t> tokens, int block_size);

std::string BlockKeyHex(const BlockKey& key);  // 32 lowercase hex digits, high then low

}  // namespace pdserve::kv
