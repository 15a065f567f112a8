#pragma once
// Byte-level BPE (GGUF `gpt2`, e.g. SmolLM2): special tokens are split out, the rest is cut into
// words by the model's pre-tokenizer, each word's bytes are mapped to GPT-2's printable
// characters, and the adjacent pair with the lowest merge rank is merged until none is left.

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/tokenizer/pre_tokenizer.h"
#include "common/tokenizer/tokenizer.h"
#include "common/tokenizer/vocabulary.h"

namespace pdserve::tokenizer {

struct BpeConfig {
  std::string pre_tokenizer;        // GGUF tokenizer.ggml.pre, e.g. "smollm"
  std::vector<std::string> merges;  // "left right", best (rank 0) first
  int32_t bos_id = -1;
  bool add_bos = false;  // GGUF tokenizer.ggml.add_bos_token
  std::vector<int32_t> end_of_generation_ids;
};

class BpeTokenizer final : public Tokenizer {
 public:
  // Vocabulary pieces are in GPT-2's byte-to-unicode alphabet ("Ġthe").
  static absl::StatusOr<std::unique_ptr<BpeTokenizer>> Create(Vocabulary vocab, BpeConfig config);

  absl::StatusOr<std::vector<int32_t>> Encode(absl::string_view text,
                                              const EncodeOptions& options) const override;
  std::string TokenText(int32_t token, int32_t previous_token) const override;
  int32_t vocab_size() const override { return vocab_.size(); }
  int32_t bos_id() const override { return config_.bos_id; }
  const std::vector<int32_t>& end_of_generation_ids() const override {
    return config_.end_of_generation_ids;
  }
  std::string TokenPiece(int32_t token) const override;

 private:
  BpeTokenizer(Vocabulary vocab, BpeConfig config, PreTokenizer pre_tokenizer);
  absl::Status EncodeWord(absl::string_view word, std::vector<int32_t>* ids) const;

  Vocabulary vocab_;
  BpeConfig config_;
  PreTokenizer pre_tokenizer_;
  SpecialTokenSplitter splitter_;
  absl::flat_hash_map<std::string, int32_t> merge_rank_;  // "left right" -> rank
  std::array<std::string, 256> byte_to_unicode_;          // UTF-8 of each byte's stand-in
  absl::flat_hash_map<char32_t, uint8_t> unicode_to_byte_;
};

}  // namespace pdserve::tokenizer
