// Tokenizers from llama2.c tokenizer files (tok512.bin, tokenizer.bin).

#include <cstring>
#include <fstream>
#include <iterator>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "common/tokenizer/sentencepiece_tokenizer.h"
#include "common/tokenizer/tokenizer.h"
#include "common/tokenizer/vocabulary.h"

namespace pdserve::tokenizer {
namespace {

constexpr absl::string_view kSpaceMarker = "\xE2\x96\x81";  // U+2581 '▁'

bool IsByteTokenText(absl::string_view piece) {
  auto hex = [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F') || (c >= 'a' && c <= 'f');
  };
  return piece.size() == 6 && piece.substr(0, 3) == "<0x" && hex(piece[3]) && hex(piece[4]) &&
         piece[5] == '>';
}

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadLlama2cTokenizer(const std::string& path,
                                                                int32_t vocab_size) {
  // Ids 0, 1, 2 are unknown, BOS and EOS in every llama2.c tokenizer (run.c assumes them).
  constexpr int32_t kUnk = 0, kBos = 1, kEos = 2;
  if (vocab_size <= kEos) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": vocab_size ", vocab_size, " is too small for a tokenizer"));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open tokenizer file ", path));
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) return absl::DataLossError(absl::StrCat("cannot read tokenizer file ", path));

  size_t offset = 0;
  auto read = [&](void* out, size_t n) {
    if (bytes.size() - offset < n) return false;
    std::memcpy(out, bytes.data() + offset, n);
    offset += n;
    return true;
  };
  int32_t max_token_length = 0;
  if (!read(&max_token_length, sizeof max_token_length)) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": truncated header"));
  }
  Vocabulary vocab;
  vocab.pieces.resize(vocab_size);
  vocab.scores.resize(vocab_size);
  vocab.kinds.assign(vocab_size, TokenKind::kNormal);
  for (int32_t id = 0; id < vocab_size; ++id) {
    int32_t length = 0;
    if (!read(&vocab.scores[id], sizeof(float)) || !read(&length, sizeof length)) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ": truncated at token ", id, " of ", vocab_size, " (byte offset ", offset, ")"));
    }
    if (length < 0 || static_cast<size_t>(length) > bytes.size() - offset) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": token ", id, " has length ", length,
                                                     " at byte offset ", offset - 4,
                                                     ", past the end of the file"));
    }
    // Stored with spaces where SentencePiece has U+2581: put the marker back so both file
    // formats share one tokenizer.
    vocab.pieces[id] = absl::StrReplaceAll(absl::string_view(bytes.data() + offset, length),
                                           {{" ", kSpaceMarker}});
    offset += length;
    if (IsByteTokenText(vocab.pieces[id])) vocab.kinds[id] = TokenKind::kByte;
  }
  if (offset != bytes.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": ", bytes.size() - offset, " bytes left after ", vocab_size,
                     " tokens; does vocab_size match this tokenizer?"));
  }
  // run.c stores BOS and EOS as "\n<s>\n" and "\n</s>\n"; use SentencePiece's names.
  vocab.kinds[kUnk] = TokenKind::kUnknown;
  vocab.kinds[kBos] = TokenKind::kControl;
  vocab.kinds[kEos] = TokenKind::kControl;
  vocab.pieces[kBos] = "<s>";
  vocab.pieces[kEos] = "</s>";

  SentencePieceConfig config;
  config.bos_id = kBos;
  config.unk_id = kUnk;
  config.add_bos = true;
  config.add_space_prefix = true;
  // llama2.c stories models end a story with BOS.
  config.end_of_generation_ids = {kBos, kEos};
  absl::StatusOr<std::unique_ptr<SentencePieceTokenizer>> tokenizer =
      SentencePieceTokenizer::Create(std::move(vocab), std::move(config));
  if (!tokenizer.ok()) return tokenizer.status();
  return std::unique_ptr<Tokenizer>(*std::move(tokenizer));
}

}  // namespace pdserve::tokenizer
