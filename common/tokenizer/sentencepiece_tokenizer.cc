#include "common/tokenizer/sentencepiece_tokenizer.h"

#include <queue>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "common/tokenizer/utf8.h"

namespace pdserve::tokenizer {
namespace {

constexpr absl::string_view kSpaceMarker = "\xE2\x96\x81";  // U+2581 '▁'

// <0xAB> -> 0xAB; -1 when `piece` is not of that form.
int ParseByteToken(absl::string_view piece) {
  if (piece.size() != 6 || piece.substr(0, 3) != "<0x" || piece[5] != '>') return -1;
  int value = 0;
  for (char c : piece.substr(3, 2)) {
    value <<= 4;
    if (c >= '0' && c <= '9') {
      value |= c - '0';
    } else if (c >= 'A' && c <= 'F') {
      value |= c - 'A' + 10;
    } else if (c >= 'a' && c <= 'f') {
      value |= c - 'a' + 10;
    } else {
      return -1;
    }
  }
  return value;
}

// One symbol of the merge: a byte range of the escaped text, linked to its live neighbours.
struct Symbol {
  int prev;  // -1 at the start
  int next;  // -1 at the end
  size_t begin;
  size_t length;  // 0 once merged into its left neighbour
};

struct Bigram {
  float score;
  int left;  // symbol index
  size_t length;  // bytes of the merged text, to spot stale entries
  int32_t token;
};

// Highest score first; on a tie the leftmost pair, as llama2.c's run.c and llama.cpp choose.
struct BigramOrder {
  bool operator()(const Bigram& a, const Bigram& b) const {
    return a.score < b.score || (a.score == b.score && a.left > b.left);
  }
};

}  // namespace

SentencePieceTokenizer::SentencePieceTokenizer(Vocabulary vocab, SentencePieceConfig config)
    : vocab_(std::move(vocab)), config_(std::move(config)), splitter_(vocab_) {
  byte_to_id_.fill(-1);
  for (int32_t id = 0; id < vocab_.size(); ++id) {
    if (vocab_.kinds[id] != TokenKind::kByte) continue;
    const int byte = ParseByteToken(vocab_.pieces[id]);
    if (byte >= 0 && byte_to_id_[byte] < 0) byte_to_id_[byte] = id;
  }
}

absl::StatusOr<std::unique_ptr<SentencePieceTokenizer>> SentencePieceTokenizer::Create(
    Vocabulary vocab, SentencePieceConfig config) {
  if (vocab.pieces.empty()) return absl::InvalidArgumentError("tokenizer vocabulary is empty");
  if (vocab.scores.size() != vocab.pieces.size() || vocab.kinds.size() != vocab.pieces.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("tokenizer vocabulary has ", vocab.pieces.size(), " pieces but ",
                     vocab.scores.size(), " scores and ", vocab.kinds.size(), " kinds"));
  }
  const int32_t n = vocab.size();
  auto check_id = [n](int32_t id, absl::string_view what) -> absl::Status {
    if (id < -1 || id >= n) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, " id ", id, " is outside the vocabulary of ", n));
    }
    return absl::OkStatus();
  };
  if (auto s = check_id(config.bos_id, "BOS"); !s.ok()) return s;
  if (auto s = check_id(config.unk_id, "unknown-token"); !s.ok()) return s;
  for (int32_t id : config.end_of_generation_ids) {
    if (auto s = check_id(id, "end-of-generation"); !s.ok()) return s;
  }
  vocab.BuildIndex();
  return std::unique_ptr<SentencePieceTokenizer>(
      new SentencePieceTokenizer(std::move(vocab), std::move(config)));
}

absl::Status SentencePieceTokenizer::EncodeEscaped(absl::string_view text,
                                                   std::vector<int32_t>* ids) const {
  std::vector<Symbol> symbols;
  for (size_t offset = 0; offset < text.size();) {
    const size_t length =
        std::min(Utf8SequenceLength(static_cast<unsigned char>(text[offset])),
                 text.size() - offset);
    const int index = static_cast<int>(symbols.size());
    symbols.push_back(Symbol{index - 1, -1, offset, length});
    if (index > 0) symbols[index - 1].next = index;
    offset += length;
  }

  std::priority_queue<Bigram, std::vector<Bigram>, BigramOrder> queue;
  auto try_add = [&](int left, int right) {
    if (left < 0 || right < 0) return;
    const size_t length = symbols[left].length + symbols[right].length;
    const int32_t token = vocab_.Find(text.substr(symbols[left].begin, length));
    if (token < 0) return;
    queue.push(Bigram{vocab_.scores[token], left, length, token});
  };
  for (int i = 1; i < static_cast<int>(symbols.size()); ++i) try_add(i - 1, i);

  while (!queue.empty()) {
    const Bigram bigram = queue.top();
    queue.pop();
    Symbol& left = symbols[bigram.left];
    if (left.length == 0 || left.next < 0) continue;
    Symbol& right = symbols[left.next];
    // Stale: one side was merged with something else since this pair was queued.
    if (left.length + right.length != bigram.length) continue;
    left.length += right.length;
    right.length = 0;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = bigram.left;
    try_add(left.prev, bigram.left);
    try_add(bigram.left, left.next);
  }

  for (int i = symbols.empty() ? -1 : 0; i >= 0; i = symbols[i].next) {
    const absl::string_view piece = text.substr(symbols[i].begin, symbols[i].length);
    const int32_t token = vocab_.Find(piece);
    if (token >= 0) {
      ids->push_back(token);
      continue;
    }
    // Byte fallback: a character with no piece of its own.
    for (unsigned char byte : piece) {
      if (byte_to_id_[byte] >= 0) {
        ids->push_back(byte_to_id_[byte]);
      } else if (config_.unk_id >= 0) {
        ids->push_back(config_.unk_id);
      } else {
        return absl::InvalidArgumentError(absl::StrCat(
            "text at byte ", symbols[i].begin,
            " has no token: no piece, no byte token and no unknown token"));
      }
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<int32_t>> SentencePieceTokenizer::Encode(
    absl::string_view text, const EncodeOptions& options) const {
  if (auto status = ValidateUtf8(text); !status.ok()) return status;
  std::vector<int32_t> ids;
  if (options.add_bos && config_.add_bos && config_.bos_id >= 0) ids.push_back(config_.bos_id);
  // As llama.cpp: the dummy prefix space goes before the text and again after every special
  // token, since SentencePiece sees each stretch of text as a new start.
  bool after_special = true;
  for (const Fragment& fragment : splitter_.Split(text, options.parse_special)) {
    if (fragment.token >= 0) {
      ids.push_back(fragment.token);
      after_special = true;
      continue;
    }
    std::string escaped;
    if (config_.add_space_prefix && after_special) escaped = std::string(kSpaceMarker);
    escaped += absl::StrReplaceAll(fragment.text, {{" ", kSpaceMarker}});
    if (auto status = EncodeEscaped(escaped, &ids); !status.ok()) return status;
    after_special = false;
  }
  return ids;
}

std::string SentencePieceTokenizer::TokenText(int32_t token, int32_t previous_token) const {
  if (token < 0 || token >= vocab_.size()) return "";
  switch (vocab_.kinds[token]) {
    case TokenKind::kControl:
      return "";
    case TokenKind::kByte: {
      const int byte = ParseByteToken(vocab_.pieces[token]);
      if (byte >= 0) return std::string(1, static_cast<char>(byte));
      break;
    }
    default:
      break;
  }
  std::string text = absl::StrReplaceAll(vocab_.pieces[token], {{kSpaceMarker, " "}});
  // The dummy prefix space of the first word is not part of the text.
  if (config_.add_space_prefix && previous_token >= 0 && previous_token == config_.bos_id &&
      !text.empty() && text[0] == ' ') {
    text.erase(0, 1);
  }
  return text;
}

std::string SentencePieceTokenizer::TokenPiece(int32_t token) const {
  if (token < 0 || token >= vocab_.size()) return absl::StrCat("<invalid token ", token, ">");
  return vocab_.pieces[token];
}

}  // namespace pdserve::tokenizer
