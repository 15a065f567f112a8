#pragma once
// How the fuzz targets cut one libFuzzer input into several values, and how the seed maker
// writes inputs they read back. A piece is a 2-byte little-endian length followed by that many
// bytes; a length past the end takes what is left, so every input means something.

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"

namespace pdserve::fuzz {

class FuzzInput {
 public:
  FuzzInput(const uint8_t* data, size_t size)
      : rest_(reinterpret_cast<const char*>(data), size) {}

  bool empty() const { return rest_.empty(); }
  // 0 once the input is used up.
  uint8_t TakeByte() {
    if (rest_.empty()) return 0;
    const uint8_t b = static_cast<uint8_t>(rest_[0]);
    rest_.remove_prefix(1);
    return b;
  }
  // One length-prefixed piece (see above).
  absl::string_view TakePiece() {
    const size_t low = TakeByte();
    const size_t n = low | (size_t{TakeByte()} << 8);
    const absl::string_view piece = rest_.substr(0, n);
    rest_.remove_prefix(piece.size());
    return piece;
  }
  // Everything not taken yet.
  absl::string_view TakeRest() {
    const absl::string_view all = rest_;
    rest_ = {};
    return all;
  }

 private:
  absl::string_view rest_;
};

// Appends `piece` as TakePiece reads it. Precondition: piece.size() < 65536.
inline void AppendPiece(std::string& out, absl::string_view piece) {
  out.push_back(static_cast<char>(piece.size() & 0xff));
  out.push_back(static_cast<char>(piece.size() >> 8));
  out.append(piece.data(), piece.size());
}

}  // namespace pdserve::fuzz
