#include "common/kv_transfer/transfer_token.h"

#include <random>

#include "absl/strings/escaping.h"

namespace pdserve::kv_transfer {

std::string NewTransferToken() {
  // libstdc++'s random_device reads the kernel's random source (getrandom / /dev/urandom).
  static thread_local std::random_device device;
  std::string token(kTransferTokenBytes, '\0');
  for (size_t i = 0; i < token.size(); i += 4) {
    const uint32_t word = device();
    for (size_t j = 0; j < 4 && i + j < token.size(); ++j) {
      token[i + j] = static_cast<char>((word >> (8 * j)) & 0xff);
    }
  }
  return token;
}

bool TransferTokensEqual(absl::string_view a, absl::string_view b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

std::string TransferTokenTag(absl::string_view token) {
  return absl::BytesToHexString(token.substr(0, 4));
}

}  // namespace pdserve::kv_transfer
