#include "common/kv/block_key.h"

#include <cstddef>

#include <xxhash.h>

namespace pdserve::kv {
namespace {

// Explicit little-endian stores keep the hashed bytes (docs/kv-layout.md) host-independent.
void PutLe64(uint64_t v, uint8_t* out) {
  for (int i = 0; i < 8; ++i) out[i] = static_cast<uint8_t>(v >> (8 * i));
}

void PutLe32(uint32_t v, uint8_t* out) {
  for (int i = 0; i < 4; ++i) out[i] = static_cast<uint8_t>(v >> (8 * i));
}

}  // namespace

BlockKey ChainBlockKey(const BlockKey& parent, absl::Span<const int32_t> block_tokens) {
  std::vector<uint8_t> bytes(16 + 4 * block_tokens.size());
  PutLe64(parent.low, bytes.data());
  PutLe64(parent.high, bytes.data() + 8);
  for (size_t i = 0; i < block_tokens.size(); ++i) {
    PutLe32(static_cast<uint32_t>(block_tokens[i]), bytes.data() + 16 + 4 * i);
  }
  const XXH128_hash_t hash = XXH3_128bits_withSeed(bytes.data(), bytes.size(), kBlockKeySeed);
  return BlockKey{hash.low64, hash.high64};
}

std::vector<BlockKey> FullBlockKeys(absl::Span<const int32_t> tokens, int block_size) {
  std::vector<BlockKey> keys;
  if (block_size <= 0) return keys;
  const size_t n_full = tokens.size() / static_cast<size_t>(block_size);
  keys.reserve(n_full);
  BlockKey parent = kRootBlockKey;
  for (size_t b = 0; b < n_full; ++b) {
    parent = ChainBlockKey(parent, tokens.subspan(b * block_size, block_size));
    keys.push_back(parent);
  }
  return keys;
}

std::string BlockKeyHex(const BlockKey& key) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string hex(32, '0');
  for (int i = 0; i < 16; ++i) {
    hex[15 - i] = kDigits[(key.high >> (4 * i)) & 0xF];
    hex[31 - i] = kDigits[(key.low >> (4 * i)) & 0xF];
  }
  return hex;
}

}  // namespace pdserve::kv
