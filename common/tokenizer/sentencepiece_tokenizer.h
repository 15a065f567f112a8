#pragma once
// SentencePiece-style tokenizer (llama2.c tok*.bin, GGUF `llama`): text is split into UTF-8
// characters, then the adjacent pair whose concatenation is a piece with the highest score is
// merged until none is left; characters without a piece become byte tokens <0xAB>.

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/tokenizer/tokenizer.h"
#include "common/tokenizer/vocabulary.h"

namespace pdserve::tokenizer {

struct SentencePieceConfig {
  int32_t bos_id = -1;  // -1: none
  int32_t unk_id = -1;  // -1: none (a character with neither piece nor byte token is an error)
  bool add_bos = true;           // GGUF tokenizer.ggml.add_bos_token
  bool add_space_prefix = true;  // GGUF tokenizer.ggml.add_space_prefix
  std::vector<int32_t> end_of_generation_ids;
};

class SentencePieceTokenizer final : public Tokenizer {
 public:
  // `vocab` pieces use U+2581 for a space, as SentencePiece stores them (the llama2.c loader
  // converts its spaces back, so TokenPiece shows U+2581 for both formats). Byte tokens are found
  // by kind (TokenKind::kByte) and their <0xAB> text.
  static absl::StatusOr<std::unique_ptr<SentencePieceTokenizer>> Create(
      Vocabulary vocab, SentencePieceConfig config);

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
  SentencePieceTokenizer(Vocabulary vocab, SentencePieceConfig config);
  // Appends the ids of one stretch of ordinary text (spaces already escaped to U+2581).
  absl::Status EncodeEscaped(absl::string_view escaped, std::vector<int32_t>* ids) const;

  Vocabulary vocab_;
  SentencePieceConfig config_;
  SpecialTokenSplitter splitter_;
  std::array<int32_t, 256> byte_to_id_;  // -1 where the vocabulary has no byte token
};

}  // namespace pdserve::tokenizer
