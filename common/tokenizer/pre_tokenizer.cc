#include "common/tokenizer/pre_tokenizer.h"

#include <cstdint>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/tokenizer/utf8.h"
#include "utf8proc.h"

namespace pdserve::tokenizer {
namespace {

enum CharClass : uint8_t {
  kOther = 0,
  kLetter = 1,      // \p{L}
  kNumber = 2,      // \p{N}
  kWhitespace = 4,  // \s: the Unicode White_Space property, as Oniguruma and llama.cpp use
};

bool IsWhiteSpace(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
         c == 0x205F || c == 0x3000;
}

uint8_t Classify(char32_t c) {
  if (IsWhiteSpace(c)) return kWhitespace;
  switch (utf8proc_category(static_cast<utf8proc_int32_t>(c))) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO:
      return kLetter;
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_NO:
      return kNumber;
    default:
      return kOther;
  }
}

// The text as code points with their classes; a fragment is a half-open range of indices.
struct CodePoints {
  std::vector<char32_t> cps;
  std::vector<uint8_t> classes;
};

char32_t ToLowerAscii(char32_t c) { return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c; }

// Appends to `ends` the end of every word of [begin, end) under `splitter`.
void SplitFragment(const CodePoints& text, size_t begin, size_t end,
                   PreTokenizer::Splitter splitter, std::vector<size_t>* ends) {
  using Splitter = PreTokenizer::Splitter;
  // Out-of-fragment positions read as "no character": a regex sees only its fragment.
  auto cp = [&](size_t i) -> char32_t { return i < end ? text.cps[i] : 0xFFFFFFFF; };
  auto is = [&](size_t i, uint8_t cls) { return i < end && text.classes[i] == cls; };
  auto is_other = [&](size_t i) { return i < end && text.classes[i] == kOther; };
  auto is_newline = [&](size_t i) { return i < end && (cp(i) == '\r' || cp(i) == '\n'); };

  if (splitter == Splitter::kIsolateDigits) {
    size_t last = begin;
    for (size_t i = begin; i < end; ++i) {
      if (text.classes[i] != kNumber) continue;
      if (i > last) ends->push_back(i);
      ends->push_back(i + 1);
      last = i + 1;
    }
    if (last < end) ends->push_back(end);
    return;
  }

  const bool llama3_style = splitter != Splitter::kGpt2;
  const size_t max_digits = splitter == Splitter::kLlama3 ? 3 : splitter == Splitter::kQwen2 ? 1 : 0;
  size_t pos = begin;
  while (pos < end) {
    const char32_t c = cp(pos);
    // Contractions: 's 't 're 've 'm 'll 'd (case-insensitive for Llama 3 style).
    if (c == '\'' && pos + 1 < end) {
      const char32_t c1 = llama3_style ? ToLowerAscii(cp(pos + 1)) : cp(pos + 1);
      if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') {
        pos += 2;
        ends->push_back(pos);
        continue;
      }
      if (pos + 2 < end) {
        const char32_t c2 = llama3_style ? ToLowerAscii(cp(pos + 2)) : cp(pos + 2);
        if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l')) {
          pos += 3;
          ends->push_back(pos);
          continue;
        }
      }
    }
    if (!llama3_style) {
      // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`
      const size_t body = (c == ' ' && pos + 1 < end) ? pos + 1 : pos;
      const uint8_t cls = text.classes[body];
      if (body < end && cls != kWhitespace) {
        size_t i = body;
        while (is(i, cls)) ++i;
        pos = i;
        ends->push_back(pos);
        continue;
      }
    } else {
      // `[^\r\n\p{L}\p{N}]?\p{L}+`
      if (!is_newline(pos) && !is(pos, kNumber) && (is(pos, kLetter) || is(pos + 1, kLetter))) {
        size_t i = pos + 1;
        while (is(i, kLetter)) ++i;
        pos = i;
        ends->push_back(pos);
        continue;
      }
      // `\p{N}{1,3}` (Qwen2: `\p{N}`)
      if (is(pos, kNumber)) {
        size_t n = 0;
        while (is(pos, kNumber) && n < max_digits) ++pos, ++n;
        ends->push_back(pos);
        continue;
      }
      // ` ?[^\s\p{L}\p{N}]+[\r\n]*`
      const size_t body = (c == ' ') ? pos + 1 : pos;
      if (is_other(body)) {
        size_t i = body;
        while (is_other(i)) ++i;
        while (is_newline(i)) ++i;
        pos = i;
        ends->push_back(pos);
        continue;
      }
    }
    // Whitespace.
    size_t run_end = pos;
    size_t last_newline_end = 0;
    while (is(run_end, kWhitespace)) {
      if (is_newline(run_end)) last_newline_end = run_end + 1;
      ++run_end;
    }
    if (llama3_style && last_newline_end > 0) {  // `\s*[\r\n]+`
      pos = last_newline_end;
      ends->push_back(pos);
      continue;
    }
    if (run_end - pos > 1 && run_end < end) {  // `\s+(?!\S)`: leave the last one to the next word
      pos = run_end - 1;
      ends->push_back(pos);
      continue;
    }
    if (run_end > pos) {  // `\s+`
      pos = run_end;
      ends->push_back(pos);
      continue;
    }
    ends->push_back(++pos);  // nothing matches: the character alone
  }
}

}  // namespace

absl::StatusOr<PreTokenizer> PreTokenizer::ForName(absl::string_view name) {
  PreTokenizer pre;
  pre.name_ = std::string(name);
  // The groups are llama.cpp's (llama-vocab.cpp), which match each model's tokenizer.json.
  static constexpr absl::string_view kGpt2Names[] = {"gpt2", "mpt", "olmo", "jais", "trillion"};
  static constexpr absl::string_view kDigitsThenGpt2Names[] = {
      "smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva-7b"};
  static constexpr absl::string_view kLlama3Names[] = {"llama3", "llama-v3", "llama-bpe",
                                                       "falcon3", "pixtral"};
  static constexpr absl::string_view kQwen2Names[] = {"qwen2", "stablelm2", "deepseek-r1-qwen",
                                                      "hunyuan"};
  auto in = [&](const auto& names) {
    for (absl::string_view n : names) {
      if (n == name) return true;
    }
    return false;
  };
  if (in(kGpt2Names)) {
    pre.splitters_ = {Splitter::kGpt2};
  } else if (in(kDigitsThenGpt2Names)) {
    pre.splitters_ = {Splitter::kIsolateDigits, Splitter::kGpt2};
  } else if (in(kLlama3Names)) {
    pre.splitters_ = {Splitter::kLlama3};
    pre.ignore_merges_ = true;
  } else if (in(kQwen2Names)) {
    pre.splitters_ = {Splitter::kQwen2};
  } else {
    std::vector<absl::string_view> supported;
    auto add = [&](const auto& names) { supported.insert(supported.end(), names, names + std::size(names)); };
    add(kGpt2Names);
    add(kDigitsThenGpt2Names);
    add(kLlama3Names);
    add(kQwen2Names);
    return absl::InvalidArgumentError(
        absl::StrCat("pre-tokenizer '", name, "' (tokenizer.ggml.pre) is not supported; supported: ",
                     absl::StrJoin(supported, ", ")));
  }
  return pre;
}

std::vector<absl::string_view> PreTokenizer::Split(absl::string_view text) const {
  CodePoints points;
  points.cps = DecodeUtf8(text);
  points.classes.reserve(points.cps.size());
  for (char32_t c : points.cps) points.classes.push_back(Classify(c));
  // Byte offset of every code point, plus the end.
  std::vector<size_t> byte_offsets;
  byte_offsets.reserve(points.cps.size() + 1);
  for (size_t offset = 0; offset < text.size();) {
    byte_offsets.push_back(offset);
    offset += Utf8SequenceLength(static_cast<unsigned char>(text[offset]));
  }
  byte_offsets.push_back(text.size());

  std::vector<size_t> ends = {points.cps.size()};  // fragment ends, in code points
  for (Splitter splitter : splitters_) {
    std::vector<size_t> next_ends;
    size_t begin = 0;
    for (size_t end : ends) {
      if (end > begin) SplitFragment(points, begin, end, splitter, &next_ends);
      begin = end;
    }
    ends = std::move(next_ends);
  }
  std::vector<absl::string_view> words;
  words.reserve(ends.size());
  size_t begin = 0;
  for (size_t end : ends) {
    if (end > begin) {
      words.push_back(text.substr(byte_offsets[begin], byte_offsets[end] - byte_offsets[begin]));
    }
    begin = end;
  }
  return words;
}

}  // namespace pdserve::tokenizer
