#include "common/sampling/text_stream.h"

#include <algorithm>
#include <utility>

namespace pdserve::sampling {
namespace {

constexpr absl::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD

enum class SeqKind { kValid, kInvalid, kIncomplete };

struct Seq {
  SeqKind kind;
  size_t length;  // kValid: the character's bytes; kInvalid: the maximal subpart to replace
};

// Classifies the UTF-8 sequence starting at bytes[i] (Unicode table 3-7: no overlongs, no
// surrogates, nothing above U+10FFFF).
Seq ClassifyAt(absl::string_view bytes, size_t i) {
  const auto b0 = static_cast<unsigned char>(bytes[i]);
  if (b0 < 0x80) return {SeqKind::kValid, 1};
  size_t need;
  unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    need = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    need = 3;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    need = 4;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else {
    return {SeqKind::kInvalid, 1};
  }
  for (size_t k = 1; k < need; ++k) {
    if (i + k >= bytes.size()) return {SeqKind::kIncomplete, bytes.size() - i};
    const auto b = static_cast<unsigned char>(bytes[i + k]);
    const bool ok = k == 1 ? (b >= lo && b <= hi) : (b >= 0x80 && b <= 0xBF);
    if (!ok) return {SeqKind::kInvalid, k};
  }
  return {SeqKind::kValid, need};
}

// Appends to `out` the valid UTF-8 for bytes[0, limit), replacing ill-formed sequences. A
// character that is incomplete in `bytes` or extends past `limit` stops the walk, unless `final`,
// when an incomplete tail becomes U+FFFD. Returns the number of bytes consumed.
size_t DecodePrefix(absl::string_view bytes, size_t limit, bool final, std::string* out) {
  size_t i = 0;
  while (i < limit) {
    const Seq seq = ClassifyAt(bytes, i);
    if (seq.kind == SeqKind::kIncomplete && !final) break;
    if (i + seq.length > limit) break;
    if (seq.kind == SeqKind::kValid) {
      out->append(bytes.data() + i, seq.length);
    } else {
      out->append(kReplacement.data(), kReplacement.size());
    }
    i += seq.length;
  }
  return i;
}

}  // namespace

std::string ToValidUtf8(absl::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  DecodePrefix(bytes, bytes.size(), /*final=*/true, &out);
  return out;
}

TextStream::TextStream(std::vector<std::string> stop_strings)
    : stop_strings_(std::move(stop_strings)) {}

size_t TextStream::StopPrefixHold() const {
  const absl::string_view pending(pending_);
  size_t hold = 0;
  for (const std::string& stop : stop_strings_) {
    if (stop.empty()) continue;
    for (size_t k = std::min(stop.size() - 1, pending.size()); k > hold; --k) {
      if (pending.substr(pending.size() - k) == absl::string_view(stop).substr(0, k)) {
        hold = k;
        break;
      }
    }
  }
  return hold;
}

TextStreamStep TextStream::Push(absl::string_view token_bytes) {
  TextStreamStep step;
  if (stopped_) {
    step.stopped = true;
    return step;
  }
  pending_.append(token_bytes.data(), token_bytes.size());

  // Invariant: no stop string starts in text already emitted (its start would have been held
  // back as a stop prefix), so searching pending_ finds every match.
  // A stop string's first occurrence is also the one that ends first.
  size_t match = std::string::npos;
  size_t match_end = std::string::npos;
  for (size_t s = 0; s < stop_strings_.size(); ++s) {
    const std::string& stop = stop_strings_[s];
    if (stop.empty()) continue;
    const size_t pos = pending_.find(stop);
    if (pos == std::string::npos) continue;
    const size_t end = pos + stop.size();
    if (end < match_end || (end == match_end && pos < match)) {
      match = pos;
      match_end = end;
      step.stop_index = static_cast<int>(s);
    }
  }
  if (match != std::string::npos) {
    // The text before the stop is final: decoded on its own, an incomplete tail becomes U+FFFD.
    DecodePrefix(absl::string_view(pending_).substr(0, match), match, /*final=*/true, &step.text);
    step.stopped = true;
    stopped_ = true;
    pending_.clear();
    return step;
  }

  const size_t consumed =
      DecodePrefix(pending_, pending_.size() - StopPrefixHold(), /*final=*/false, &step.text);
  pending_.erase(0, consumed);
  return step;
}

std::string TextStream::Flush() {
  std::string out;
  if (stopped_) return out;
  DecodePrefix(pending_, pending_.size(), /*final=*/true, &out);
  pending_.clear();
  return out;
}

}  // namespace pdserve::sampling
