#include "common/kv_transfer/kv_blocks.h"

#include "xxhash.h"

namespace pdserve::kv_transfer {

uint64_t BlockChecksum(absl::Span<const uint8_t> bytes) {
  return XXH3_64bits(bytes.data(), bytes.size());
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
