#pragma once
// Pre-tokenizers of byte-level BPE models: the split of text into words before merges, by the
// regular expressions llama.cpp and Hugging Face use for each GGUF tokenizer.ggml.pre, written
// out by hand over Unicode categories (utf8proc) instead of with a regex engine.
//
// A pre-tokenizer is a sequence of splitters, each applied to every fragment the previous one
// produced; a regex never looks across a fragment boundary (as in Hugging Face's Sequence and in
// llama.cpp's unicode_regex_split). Text a splitter does not match stays a fragment of its own.

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace pdserve::tokenizer {

class PreTokenizer {
 public:
  // The pre-tokenizer named by GGUF tokenizer.ggml.pre; an unsupported name is an
  // InvalidArgument error naming it.
  static absl::StatusOr<PreTokenizer> ForName(absl::string_view name);

  // Splits valid UTF-8 `text` into words, in order; their concatenation is `text`.
  std::vector<absl::string_view> Split(absl::string_view text) const;

  const std::string& name() const { return name_; }
  // Llama 3 style: a word that is a vocabulary piece is taken whole, without merges.
  bool ignore_merges() const { return ignore_merges_; }

  enum class Splitter {
    kIsolateDigits,  // \p{N}: every digit alone
    kGpt2,           // 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
    kLlama3,         // (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
                     //  ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
    kQwen2,          // as kLlama3 with \p{N} instead of \p{N}{1,3}
  };

 private:
  std::string name_;
  std::vector<Splitter> splitters_;
  bool ignore_merges_ = false;
};

}  // namespace pdserve::tokenizer
