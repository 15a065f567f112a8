#include "common/kv_transfer/kv_blocks.h"

#include <algorithm>
#include <cstring>

// For XXH3_state_t on the stack.
#define XXH_STATIC_LINKING_ONLY
#include "xxhash.h"

namespace pdserve::kv_transfer {
namespace {

// Small enough to stay in L1/L2 between the hash and the copy.
constexpr size_t kCopyPieceBytes = 16 << 10;

}  // namespace

uint64_t BlockChecksum(absl::Span<const uint8_t> bytes) {
  return XXH3_64bits(bytes.data(), bytes.size());
}

uint64_t CopyBlockWithChecksum(absl::Span<uint8_t> dst, absl::Span<const uint8_t> src) {
  XXH3_state_t state;
  XXH3_64bits_reset(&state);
  for (size_t offset = 0; offset < src.size(); offset += kCopyPieceBytes) {
    const size_t n = std::min(kCopyPieceBytes, src.size() - offset);
    XXH3_64bits_update(&state, src.data() + offset, n);
    std::memcpy(dst.data() + offset, src.data() + offset, n);
  }
  return XXH3_64bits_digest(&state);
}

std::string BlockKeyBytes(const kv::BlockKey& key) {
  std::string bytes(16, '\0');
  for (int i = 0; i < 8; ++i) {
    bytes[i] = static_cast<char>((key.low >> (8 * i)) & 0xff);
    bytes[8 + i] = static_cast<char>((key.high >> (8 * i)) & 0xff);
  }
  return bytes;
}

}  // namespace pdserve::kv_transfer
