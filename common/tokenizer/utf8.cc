#include "common/tokenizer/utf8.h"

#include "absl/strings/str_cat.h"

namespace pdserve::tokenizer {

absl::Status ValidateUtf8(absl::string_view text) {
  const auto* bytes = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  size_t i = 0;
  while (i < n) {
    const unsigned char lead = bytes[i];
    size_t length = 0;
    char32_t code_point = 0;
    char32_t min_code_point = 0;
    if (lead < 0x80) {
      ++i;
      continue;
    } else if ((lead & 0xE0) == 0xC0) {
      length = 2, code_point = lead & 0x1F, min_code_point = 0x80;
    } else if ((lead & 0xF0) == 0xE0) {
      length = 3, code_point = lead & 0x0F, min_code_point = 0x800;
    } else if ((lead & 0xF8) == 0xF0) {
      length = 4, code_point = lead & 0x07, min_code_point = 0x10000;
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          "invalid UTF-8 at byte offset ", i, ": byte 0x", absl::Hex(lead, absl::kZeroPad2),
          " cannot start a character"));
    }
    if (i + length > n) {
      return absl::InvalidArgumentError(
          absl::StrCat("invalid UTF-8 at byte offset ", i, ": truncated ", length,
                       "-byte sequence at the end of the text"));
    }
    for (size_t k = 1; k < length; ++k) {
      const unsigned char continuation = bytes[i + k];
      if ((continuation & 0xC0) != 0x80) {
        return absl::InvalidArgumentError(absl::StrCat(
            "invalid UTF-8 at byte offset ", i + k, ": expected a continuation byte, got 0x",
            absl::Hex(continuation, absl::kZeroPad2)));
      }
      code_point = (code_point << 6) | (continuation & 0x3F);
    }
    if (code_point < min_code_point) {
      return absl::InvalidArgumentError(
          absl::StrCat("invalid UTF-8 at byte offset ", i, ": overlong encoding"));
    }
    if (code_point >= 0xD800 && code_point <= 0xDFFF) {
      return absl::InvalidArgumentError(
          absl::StrCat("invalid UTF-8 at byte offset ", i, ": encoded surrogate"));
    }
    if (code_point > 0x10FFFF) {
      return absl::InvalidArgumentError(
          absl::StrCat("invalid UTF-8 at byte offset ", i, ": code point above U+10FFFF"));
    }
    i += length;
  }
  return absl::OkStatus();
}

size_t Utf8SequenceLength(unsigned char lead) {
  if ((lead & 0xE0) == 0xC0) return 2;
  if ((lead & 0xF0) == 0xE0) return 3;
  if ((lead & 0xF8) == 0xF0) return 4;
  return 1;
}

std::vector<char32_t> DecodeUtf8(absl::string_view text) {
  std::vector<char32_t> out;
  out.reserve(text.size());
  const auto* bytes = reinterpret_cast<const unsigned char*>(text.data());
  size_t i = 0;
  while (i < text.size()) {
    const size_t length = Utf8SequenceLength(bytes[i]);
    char32_t code_point = length == 1   ? bytes[i]
                          : length == 2 ? bytes[i] & 0x1F
                          : length == 3 ? bytes[i] & 0x0F
                                        : bytes[i] & 0x07;
    for (size_t k = 1; k < length && i + k < text.size(); ++k) {
      code_point = (code_point << 6) | (bytes[i + k] & 0x3F);
    }
    out.push_back(code_point);
    i += length;
  }
  return out;
}

void AppendUtf8(char32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

}  // namespace pdserve::tokenizer
