#pragma once
// Turning generated tokens' raw bytes into text that is safe to send to a client now.
//
// A token's bytes may end inside a UTF-8 character, and the end of the text so far may be the
// start of a stop string. TextStream holds such bytes back until they are resolved, so that
// every piece it returns is valid UTF-8 and no piece ever contains (part of) a stop string that
// later completes.

#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace pdserve::sampling {

struct TextStreamStep {
  std::string text;      // valid UTF-8, to emit now (may be empty)
  bool stopped = false;  // a stop string completed; `text` ends just before it
  int stop_index = -1;   // which stop string (index into the constructor's list) when stopped
};

// Not thread-safe: one per request.
class TextStream {
 public:
  // Stop strings are matched on bytes. Empty ones are ignored.
  explicit TextStream(std::vector<std::string> stop_strings = {});

  // Appends one token's bytes. Returns the text now safe to emit. When a stop string completes
  // (possibly across tokens) returns the text before it with stopped = true; the stop string and
  // anything after it are dropped, and later calls return empty steps with stopped = true. The
  // stop string that ends first in the byte stream wins (on a tie, the one that starts first), so
  // the result does not depend on how the bytes were split into tokens.
  TextStreamStep Push(absl::string_view token_bytes);

  // End of generation: returns everything still held back (a pending stop-string prefix that
  // never completed is ordinary text), with an incomplete UTF-8 tail replaced by U+FFFD.
  // Empty when stopped.
  std::string Flush();

  bool stopped() const { return stopped_; }

 private:
  // Bytes at the end of pending_ that are a proper prefix of some stop string.
  size_t StopPrefixHold() const;

  std::vector<std::string> stop_strings_;
  std::string pending_;  // received, not yet emitted
  bool stopped_ = false;
};

// `bytes` with every ill-formed sequence (including an incomplete one at the end) replaced by
// U+FFFD, one per maximal subpart as Unicode recommends.
std::string ToValidUtf8(absl::string_view bytes);

}  // namespace pdserve::sampling
