// The tokenizers on any text and any token ids: stories260K's SentencePiece-style tokenizer
// (tok512.bin) and, when the model is in models/, SmolLM2's byte-level BPE (GGUF). The first
// byte picks the tokenizer and the encode options; the rest is encoded as text, then read as
// little-endian 16-bit token ids and decoded.
#include <memory>
#include <string>
#include <vector>

#include "common/gguf/gguf_file.h"
#include "common/tokenizer/tokenizer.h"
#include "tests/fuzz/fuzz_input.h"
#include "tests/fuzz/fuzz_targets.h"

namespace pdserve::fuzz {
namespace {

constexpr int32_t kStoriesVocab = 512;

struct Loaded {
  std::unique_ptr<gguf::GgufFile> smollm2_file;  // the BPE tokenizer may keep views into it
  std::vector<std::unique_ptr<tokenizer::Tokenizer>> tokenizers;
};
Loaded* loaded = nullptr;  // lives for the process

void CheckEncode(const tokenizer::Tokenizer& t, absl::string_view text,
                 const tokenizer::EncodeOptions& options) {
  absl::StatusOr<std::vector<int32_t>> ids = t.Encode(text, options);
  if (!ids.ok()) {
    PDSERVE_FUZZ_CHECK(absl::IsInvalidArgument(ids.status()), ids.status().ToString());
    return;
  }
  int32_t previous = -1;
  for (int32_t id : *ids) {
    PDSERVE_FUZZ_CHECK(id >= 0 && id < t.vocab_size(),
                       "Encode gave id " + std::to_string(id) + " outside the vocabulary");
    (void)t.TokenText(id, previous);
    previous = id;
  }
}

}  // namespace

bool InitTokenizerFuzz() {
  const std::string tok = SharedModelPath("tok512.bin");
  if (!FileExists(tok)) {
    std::fprintf(stderr, "tokenizer fuzz: skipped: %s is missing\n", tok.c_str());
    return false;
  }
  loaded = new Loaded;
  absl::StatusOr<std::unique_ptr<tokenizer::Tokenizer>> stories =
      tokenizer::LoadLlama2cTokenizer(tok, kStoriesVocab);
  if (!stories.ok()) std::abort();
  loaded->tokenizers.push_back(*std::move(stories));
  const std::string smollm2 = SmolLm2Path();
  if (!FileExists(smollm2)) {
    std::fprintf(stderr, "tokenizer fuzz: %s is missing: the BPE tokenizer is not fuzzed\n",
                 smollm2.c_str());
    return true;
  }
  absl::StatusOr<std::unique_ptr<gguf::GgufFile>> file = gguf::GgufFile::Open(smollm2);
  if (!file.ok()) std::abort();
  absl::StatusOr<std::unique_ptr<tokenizer::Tokenizer>> bpe = tokenizer::LoadGgufTokenizer(**file);
  if (!bpe.ok()) std::abort();
  loaded->tokenizers.push_back(*std::move(bpe));
  loaded->smollm2_file = *std::move(file);
  return true;
}

int TokenizerFuzz(const uint8_t* data, size_t size) {
  FuzzInput input(data, size);
  const uint8_t selector = input.TakeByte();
  const tokenizer::Tokenizer& t =
      *loaded->tokenizers[(selector & 1) % loaded->tokenizers.size()];
  const absl::string_view text = input.TakeRest();
  CheckEncode(t, text, {.add_bos = (selector & 2) != 0, .parse_special = (selector & 4) != 0});

  int32_t previous = (selector & 8) != 0 ? t.bos_id() : -1;
  for (size_t i = 0; i + 1 < text.size(); i += 2) {
    const uint16_t raw = static_cast<uint8_t>(text[i]) | static_cast<uint8_t>(text[i + 1]) << 8;
    const int32_t id = raw % t.vocab_size();
    (void)t.TokenText(id, previous);
    (void)t.TokenPiece(id);
    previous = id;
  }
  return 0;
}

}  // namespace pdserve::fuzz

PDSERVE_FUZZ_TARGET(pdserve::fuzz::InitTokenizerFuzz, pdserve::fuzz::TokenizerFuzz)
