#pragma once
// Text <-> token ids. Implementations: SentencePiece-style (llama2.c tok*.bin and GGUF `llama`
// tokenizers) and byte-level BPE (GGUF `gpt2`, e.g. SmolLM2).

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/gguf/gguf_file.h"

namespace pdserve::tokenizer {

struct EncodeOptions {
  // Prepend BOS when the model asks for it (GGUF tokenizer.ggml.add_bos_token; llama2.c: always).
  bool add_bos = true;
  // Turn the text of special/control tokens ("<|im_start|>") into their ids, as chat prompts
  // need. When false, such text is encoded as ordinary text.
  bool parse_special = false;
};

// Immutable once loaded: every method is const and safe to call from several threads.
class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Invalid UTF-8 is an InvalidArgument error naming the byte offset.
  virtual absl::StatusOr<std::vector<int32_t>> Encode(absl::string_view text,
                                                      const EncodeOptions& options) const = 0;

  // The bytes `token` contributes to the output text when it follows `previous_token` (-1 at the
  // start). Byte tokens give raw bytes, so one character may span several tokens; control tokens
  // (BOS, EOS) give "". Precondition: 0 <= token < vocab_size().
  virtual std::string TokenText(int32_t token, int32_t previous_token) const = 0;

  virtual int32_t vocab_size() const = 0;
  virtual int32_t bos_id() const = 0;  // -1 when the model has none
  // Ids that end generation: EOS, end-of-turn (GGUF metadata and the model's end-of-turn control
  // tokens); for llama2.c checkpoints BOS and EOS.
  virtual const std::vector<int32_t>& end_of_generation_ids() const = 0;
  // The piece of `token` as stored in the vocabulary, for diagnostics.
  virtual std::string TokenPiece(int32_t token) const = 0;
};

// From the tokenizer.ggml.* metadata of a GGUF file (model `llama` or `gpt2`); an unsupported
// tokenizer model or pre-tokenizer is an error naming it.
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadGgufTokenizer(const gguf::GgufFile& file);

// From a llama2.c tokenizer file (tok512.bin); vocab_size comes from the model's header.
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadLlama2cTokenizer(const std::string& path,
                                                                int32_t vocab_size);

}  // namespace pdserve::tokenizer
