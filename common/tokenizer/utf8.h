#pragma once
// UTF-8 helpers shared by the tokenizers: validation with a byte offset in the error, and
// code point decoding/encoding. Only well-formed UTF-8 (no overlongs, no surrogates, nothing
// above U+10FFFF) is accepted.

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace pdserve::tokenizer {

// OK, or InvalidArgument "invalid UTF-8 at byte offset N" naming the first bad byte.
absl::Status ValidateUtf8(absl::string_view text);

// Length in bytes of the sequence `lead` starts (1..4); 1 for a byte that cannot start one.
// Precondition for multi-byte use: the text was validated.
size_t Utf8SequenceLength(unsigned char lead);

// Code points of `text`. Precondition: ValidateUtf8(text).ok().
std::vector<char32_t> DecodeUtf8(absl::string_view text);

void AppendUtf8(char32_t code_point, std::string* out);

}  // namespace pdserve::tokenizer
