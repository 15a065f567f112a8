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

// The XXH3-128 seed of layout version 1: the ASCII bytes "pdsKV001" read as a big-endian
// integer. Changing it changes every key and requires a new kKvLayoutVersion.
inline constexpr uint64_t kBlockKeySeed = 0x7064734B56303031ULL;

// XXH3_128bits_withSeed(bytes, kBlockKeySeed) where bytes = parent.low (8 bytes LE),
// parent.high (8 bytes LE), then each token id as int32 LE; the result's low64/high64 become
// low/high. Callers pass exactly one full block of tokens (the function does not know the
// block size).
BlockKey ChainBlockKey(const BlockKey& parent, absl::Span<const int32_t> block_tokens);

// Keys of the full blocks of `tokens`, chained from kRootBlockKey: element i is the key of
// tokens [i * block_size, (i + 1) * block_size). A partial last block gets none. Empty when
// block_size <= 0.
std::vector<BlockKey> FullBlockKeys(absl::Span<const int32_t> tokens, int block_size);

std::string BlockKeyHex(const BlockKey& key);  // 32 lowercase hex digits, high then low

}  // namespace pdserve::kv
