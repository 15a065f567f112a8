#pragma once
// The token table both tokenizers share: pieces, kinds (GGUF tokenizer.ggml.token_type numbering)
// and the splitting of special-token text out of a prompt.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"

namespace pdserve::tokenizer {

// GGUF tokenizer.ggml.token_type values (llama.cpp's llama_token_type).
enum class TokenKind : int32_t {
  kUndefined = 0,
  kNormal = 1,
  kUnknown = 2,
  kControl = 3,      // BOS, EOS, <|im_start|>: never produced from text unless parse_special
  kUserDefined = 4,  // always matched as a whole in text, output verbatim
  kUnused = 5,
  kByte = 6,         // SentencePiece byte fallback <0xAB>
};

struct Vocabulary {
  std::vector<std::string> pieces;  // as the model stores them (SentencePiece: U+2581 for space)
  std::vector<float> scores;        // one per piece; all 0 where the model has none
  std::vector<TokenKind> kinds;     // one per piece

  // Fills piece_to_id from pieces; a duplicated piece maps to its last id, as in llama.cpp.
  void BuildIndex();
  int32_t Find(absl::string_view piece) const;  // -1 when absent
  int32_t size() const { return static_cast<int32_t>(pieces.size()); }

  absl::flat_hash_map<std::string, int32_t> piece_to_id;
};

// A piece of prompt text, or a special token found in it.
struct Fragment {
  absl::string_view text;  // empty when token >= 0
  int32_t token = -1;
};

// Splits prompt text at the text of special tokens, leftmost first and, at one position, longest
// first (as Hugging Face matches added tokens). User-defined tokens are always split out (llama.cpp
// and Hugging Face both do); control and unknown tokens only when `parse_special`.
class SpecialTokenSplitter {
 public:
  explicit SpecialTokenSplitter(const Vocabulary& vocab);
  std::vector<Fragment> Split(absl::string_view text, bool parse_special) const;

 private:
  struct Entry {
    std::string text;
    int32_t token;
    bool always;  // user-defined: matched even without parse_special
  };
  // By first byte, longest text first.
  std::vector<std::vector<Entry>> by_first_byte_;
};

}  // namespace pdserve::tokenizer
