// Tokenizers from GGUF tokenizer.ggml.* metadata: which model the file asks for, its vocabulary
// and its settings, with llama.cpp's defaults for absent keys.

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/tokenizer/bpe_tokenizer.h"
#include "common/tokenizer/sentencepiece_tokenizer.h"
#include "common/tokenizer/tokenizer.h"
#include "common/tokenizer/vocabulary.h"

namespace pdserve::tokenizer {
namespace {

// Control tokens whose text marks the end of a turn, as llama.cpp recognises them.
constexpr absl::string_view kEndOfTurnTexts[] = {
    "<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|eom_id|>", "<|end|>", "<end_of_turn>",
    "<|end_of_text|>", "<EOT>",
};

void AddUnique(int32_t id, std::vector<int32_t>* ids) {
  if (id < 0) return;
  for (int32_t existing : *ids) {
    if (existing == id) return;
  }
  ids->push_back(id);
}

// An optional token id key: `fallback` when absent; -1 when it names no token (llama.cpp writes
// 0xFFFFFFFF for "none").
absl::StatusOr<int32_t> OptionalTokenId(const gguf::GgufFile& file, absl::string_view key,
                                        int32_t fallback, int32_t n_vocab) {
  if (file.Find(key) == nullptr) return fallback;
  absl::StatusOr<int64_t> value = file.GetInt(key);
  if (!value.ok()) {
    absl::StatusOr<uint64_t> unsigned_value = file.GetUint(key);
    if (!unsigned_value.ok()) return value.status();
    return *unsigned_value < static_cast<uint64_t>(n_vocab) ? static_cast<int32_t>(*unsigned_value)
                                                            : -1;
  }
  return *value >= 0 && *value < n_vocab ? static_cast<int32_t>(*value) : -1;
}

absl::StatusOr<bool> OptionalBool(const gguf::GgufFile& file, absl::string_view key,
                                  bool fallback) {
  if (file.Find(key) == nullptr) return fallback;
  return file.GetBool(key);
}

absl::StatusOr<Vocabulary> ReadGgufVocabulary(const gguf::GgufFile& file) {
  Vocabulary vocab;
  absl::StatusOr<const gguf::ArrayValue*> tokens = file.GetArray("tokenizer.ggml.tokens");
  if (!tokens.ok()) return tokens.status();
  if ((*tokens)->element_type != gguf::ValueType::kString || (*tokens)->strings.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        file.display_name(), ": tokenizer.ggml.tokens is not a non-empty string array"));
  }
  vocab.pieces = (*tokens)->strings;
  const size_t n = vocab.pieces.size();
  if (n > static_cast<size_t>(INT32_MAX)) {
    return absl::InvalidArgumentError(absl::StrCat(file.display_name(), ": ", n, " tokens"));
  }

  vocab.scores.assign(n, 0.0f);
  if (file.Find("tokenizer.ggml.scores") != nullptr) {
    absl::StatusOr<const gguf::ArrayValue*> scores = file.GetArray("tokenizer.ggml.scores");
    if (!scores.ok()) return scores.status();
    if ((*scores)->floats.size() != n) {
      return absl::InvalidArgumentError(
          absl::StrCat(file.display_name(), ": tokenizer.ggml.scores has ",
                       (*scores)->floats.size(), " floats for ", n, " tokens"));
    }
    for (size_t i = 0; i < n; ++i) vocab.scores[i] = static_cast<float>((*scores)->floats[i]);
  }

  vocab.kinds.assign(n, TokenKind::kNormal);
  if (file.Find("tokenizer.ggml.token_type") != nullptr) {
    absl::StatusOr<const gguf::ArrayValue*> types = file.GetArray("tokenizer.ggml.token_type");
    if (!types.ok()) return types.status();
    const gguf::ArrayValue& array = **types;
    const size_t count = array.ints.empty() ? array.uints.size() : array.ints.size();
    if (count != n) {
      return absl::InvalidArgumentError(
          absl::StrCat(file.display_name(), ": tokenizer.ggml.token_type has ", count,
                       " integers for ", n, " tokens"));
    }
    for (size_t i = 0; i < n; ++i) {
      const int64_t type = array.ints.empty() ? static_cast<int64_t>(array.uints[i]) : array.ints[i];
      if (type < 0 || type > static_cast<int64_t>(TokenKind::kByte)) {
        return absl::InvalidArgumentError(absl::StrCat(
            file.display_name(), ": token ", i, " has unknown token_type ", type));
      }
      vocab.kinds[i] = static_cast<TokenKind>(type);
    }
  }
  return vocab;
}

absl::StatusOr<std::vector<int32_t>> GgufEndOfGenerationIds(const gguf::GgufFile& file,
                                                            const Vocabulary& vocab,
                                                            int32_t default_eos) {
  std::vector<int32_t> ids;
  for (auto [key, fallback] : {std::pair<absl::string_view, int32_t>{"tokenizer.ggml.eos_token_id",
                                                                     default_eos},
                               {"tokenizer.ggml.eot_token_id", -1},
                               {"tokenizer.ggml.eom_token_id", -1}}) {
    absl::StatusOr<int32_t> id = OptionalTokenId(file, key, fallback, vocab.size());
    if (!id.ok()) return id.status();
    AddUnique(*id, &ids);
  }
  for (int32_t id = 0; id < vocab.size(); ++id) {
    if (vocab.kinds[id] != TokenKind::kControl) continue;
    for (absl::string_view text : kEndOfTurnTexts) {
      if (vocab.pieces[id] == text) AddUnique(id, &ids);
    }
  }
  return ids;
}

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadGgufSentencePiece(const gguf::GgufFile& file) {
  absl::StatusOr<Vocabulary> vocab = ReadGgufVocabulary(file);
  if (!vocab.ok()) return vocab.status();
  const int32_t n = vocab->size();
  // Defaults as llama.cpp's for SentencePiece vocabularies.
  SentencePieceConfig config;
  absl::StatusOr<int32_t> bos = OptionalTokenId(file, "tokenizer.ggml.bos_token_id", 1, n);
  absl::StatusOr<int32_t> unk = OptionalTokenId(file, "tokenizer.ggml.unknown_token_id", 0, n);
  absl::StatusOr<bool> add_bos = OptionalBool(file, "tokenizer.ggml.add_bos_token", true);
  absl::StatusOr<bool> add_space =
      OptionalBool(file, "tokenizer.ggml.add_space_prefix", true);
  absl::StatusOr<std::vector<int32_t>> end_ids = GgufEndOfGenerationIds(file, *vocab, 2 < n ? 2 : -1);
  for (const absl::Status& status :
       {bos.status(), unk.status(), add_bos.status(), add_space.status(), end_ids.status()}) {
    if (!status.ok()) {
      return absl::Status(status.code(),
                          absl::StrCat(file.display_name(), ": ", status.message()));
    }
  }
  config.bos_id = *bos;
  config.unk_id = *unk;
  config.add_bos = *add_bos;
  config.add_space_prefix = *add_space;
  config.end_of_generation_ids = *std::move(end_ids);
  absl::StatusOr<std::unique_ptr<SentencePieceTokenizer>> tokenizer =
      SentencePieceTokenizer::Create(*std::move(vocab), std::move(config));
  if (!tokenizer.ok()) {
    return absl::Status(tokenizer.status().code(),
                        absl::StrCat(file.display_name(), ": ", tokenizer.status().message()));
  }
  return std::unique_ptr<Tokenizer>(*std::move(tokenizer));
}

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadGgufBpe(const gguf::GgufFile& file) {
  absl::StatusOr<Vocabulary> vocab = ReadGgufVocabulary(file);
  if (!vocab.ok()) return vocab.status();
  const int32_t n = vocab->size();
  absl::StatusOr<std::string> pre = file.Find("tokenizer.ggml.pre") == nullptr
                                        ? absl::StatusOr<std::string>("default")
                                        : file.GetString("tokenizer.ggml.pre");
  absl::StatusOr<const gguf::ArrayValue*> merges = file.GetArray("tokenizer.ggml.merges");
  absl::StatusOr<int32_t> bos = OptionalTokenId(file, "tokenizer.ggml.bos_token_id", -1, n);
  // Byte-level BPE models get BOS only when the file asks (llama.cpp's default). SmolLM2's file
  // says false and names <|im_start|> as BOS: Hugging Face (which maps the key to add_bos_token)
  // and llama.cpp both add nothing, and its chat template opens each turn with <|im_start|>.
  absl::StatusOr<bool> add_bos = OptionalBool(file, "tokenizer.ggml.add_bos_token", false);
  absl::StatusOr<std::vector<int32_t>> end_ids = GgufEndOfGenerationIds(file, *vocab, -1);
  for (const absl::Status& status :
       {pre.status(), merges.status(), bos.status(), add_bos.status(), end_ids.status()}) {
    if (!status.ok()) {
      return absl::Status(status.code(),
                          absl::StrCat(file.display_name(), ": ", status.message()));
    }
  }
  if ((*merges)->element_type != gguf::ValueType::kString) {
    return absl::InvalidArgumentError(
        absl::StrCat(file.display_name(), ": tokenizer.ggml.merges is not a string array"));
  }
  BpeConfig config;
  config.pre_tokenizer = *pre;
  config.merges = (*merges)->strings;
  config.bos_id = *bos;
  config.add_bos = *add_bos;
  config.end_of_generation_ids = *std::move(end_ids);
  absl::StatusOr<std::unique_ptr<BpeTokenizer>> tokenizer =
      BpeTokenizer::Create(*std::move(vocab), std::move(config));
  if (!tokenizer.ok()) {
    return absl::Status(tokenizer.status().code(),
                        absl::StrCat(file.display_name(), ": ", tokenizer.status().message()));
  }
  return std::unique_ptr<Tokenizer>(*std::move(tokenizer));
}

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadGgufTokenizer(const gguf::GgufFile& file) {
  absl::StatusOr<std::string> model = file.GetString("tokenizer.ggml.model");
  if (!model.ok()) {
    return absl::Status(model.status().code(),
                        absl::StrCat(file.display_name(), ": tokenizer.ggml.model: ",
                                     model.status().message()));
  }
  if (*model == "llama") return LoadGgufSentencePiece(file);
  if (*model == "gpt2") return LoadGgufBpe(file);
  return absl::UnimplementedError(absl::StrCat(file.display_name(), ": tokenizer model '", *model,
                                               "' is not supported (supported: llama, gpt2)"));
}

}  // namespace pdserve::tokenizer
