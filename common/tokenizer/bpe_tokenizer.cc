#include "common/tokenizer/bpe_tokenizer.h"

#include <queue>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/tokenizer/utf8.h"

namespace pdserve::tokenizer {
namespace {

// GPT-2's printable stand-in for every byte: printable Latin-1 bytes stand for themselves, the
// others (controls, space, 0x7F-0xA0, 0xAD) take U+0100 onwards in byte order.
std::array<char32_t, 256> ByteToUnicode() {
  std::array<char32_t, 256> map{};
  char32_t next = 256;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
    map[b] = printable ? static_cast<char32_t>(b) : next++;
  }
  return map;
}

struct Symbol {
  int prev;
  int next;
  size_t begin;   // bytes into the mapped word
  size_t length;  // 0 once merged into its left neighbour
};

struct Bigram {
  int32_t rank;
  int left;
  size_t length;
};

// Lowest rank first; on a tie the leftmost pair.
struct BigramOrder {
  bool operator()(const Bigram& a, const Bigram& b) const {
    return a.rank > b.rank || (a.rank == b.rank && a.left > b.left);
  }
};

}  // namespace

BpeTokenizer::BpeTokenizer(Vocabulary vocab, BpeConfig config, PreTokenizer pre_tokenizer)
    : vocab_(std::move(vocab)),
      config_(std::move(config)),
      pre_tokenizer_(std::move(pre_tokenizer)),
      splitter_(vocab_) {
  const std::array<char32_t, 256> map = ByteToUnicode();
  for (int b = 0; b < 256; ++b) {
    AppendUtf8(map[b], &byte_to_unicode_[b]);
    unicode_to_byte_[map[b]] = static_cast<uint8_t>(b);
  }
  merge_rank_.reserve(config_.merges.size());
  for (size_t rank = 0; rank < config_.merges.size(); ++rank) {
    // The first rank of a duplicated merge wins.
    merge_rank_.emplace(config_.merges[rank], static_cast<int32_t>(rank));
  }
  config_.merges.clear();
  config_.merges.shrink_to_fit();
}

absl::StatusOr<std::unique_ptr<BpeTokenizer>> BpeTokenizer::Create(Vocabulary vocab,
                                                                   BpeConfig config) {
  if (vocab.pieces.empty()) return absl::InvalidArgumentError("tokenizer vocabulary is empty");
  if (vocab.kinds.size() != vocab.pieces.size()) {
    return absl::InvalidArgumentError(absl::StrCat("tokenizer vocabulary has ",
                                                   vocab.pieces.size(), " pieces but ",
                                                   vocab.kinds.size(), " kinds"));
  }
  if (vocab.scores.size() != vocab.pieces.size()) vocab.scores.assign(vocab.pieces.size(), 0.0f);
  const int32_t n = vocab.size();
  if (config.bos_id < -1 || config.bos_id >= n) {
    return absl::InvalidArgumentError(
        absl::StrCat("BOS id ", config.bos_id, " is outside the vocabulary of ", n));
  }
  for (int32_t id : config.end_of_generation_ids) {
    if (id < 0 || id >= n) {
      return absl::InvalidArgumentError(
          absl::StrCat("end-of-generation id ", id, " is outside the vocabulary of ", n));
    }
  }
  for (size_t rank = 0; rank < config.merges.size(); ++rank) {
    const std::string& merge = config.merges[rank];
    const size_t space = merge.find(' ', 1);
    if (space == std::string::npos || space + 1 >= merge.size() ||
        merge.find(' ', space + 1) != std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("merge ", rank, " '", merge, "' is not two pieces separated by a space"));
    }
  }
  absl::StatusOr<PreTokenizer> pre = PreTokenizer::ForName(config.pre_tokenizer);
  if (!pre.ok()) return pre.status();
  vocab.BuildIndex();
  return std::unique_ptr<BpeTokenizer>(
      new BpeTokenizer(std::move(vocab), std::move(config), *std::move(pre)));
}

absl::Status BpeTokenizer::EncodeWord(absl::string_view word, std::vector<int32_t>* ids) const {
  std::string mapped;
  mapped.reserve(word.size() * 2);
  std::vector<Symbol> symbols;
  symbols.reserve(word.size());
  for (unsigned char byte : word) {
    const int index = static_cast<int>(symbols.size());
    symbols.push_back(Symbol{index - 1, index + 1, mapped.size(), byte_to_unicode_[byte].size()});
    mapped += byte_to_unicode_[byte];
  }
  if (symbols.empty()) return absl::OkStatus();
  symbols.back().next = -1;

  if (pre_tokenizer_.ignore_merges()) {
    if (const int32_t token = vocab_.Find(mapped); token >= 0) {
      ids->push_back(token);
      return absl::OkStatus();
    }
  }

  std::priority_queue<Bigram, std::vector<Bigram>, BigramOrder> queue;
  std::string key;
  auto try_add = [&](int left, int right) {
    if (left < 0 || right < 0) return;
    key.assign(mapped, symbols[left].begin, symbols[left].length);
    key += ' ';
    key.append(mapped, symbols[right].begin, symbols[right].length);
    auto it = merge_rank_.find(key);
    if (it == merge_rank_.end()) return;
    queue.push(Bigram{it->second, left, symbols[left].length + symbols[right].length});
  };
  for (int i = 1; i < static_cast<int>(symbols.size()); ++i) try_add(i - 1, i);

  while (!queue.empty()) {
    const Bigram bigram = queue.top();
    queue.pop();
    Symbol& left = symbols[bigram.left];
    if (left.length == 0 || left.next < 0) continue;
    Symbol& right = symbols[left.next];
    if (left.length + right.length != bigram.length) continue;  // stale
    left.length += right.length;
    right.length = 0;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = bigram.left;
    try_add(left.prev, bigram.left);
    try_add(bigram.left, left.next);
  }

  for (int i = 0; i >= 0; i = symbols[i].next) {
    const absl::string_view piece =
        absl::string_view(mapped).substr(symbols[i].begin, symbols[i].length);
    if (const int32_t token = vocab_.Find(piece); token >= 0) {
      ids->push_back(token);
      continue;
    }
    // A merge result missing from the vocabulary: fall back to one token per byte.
    for (const char32_t c : DecodeUtf8(piece)) {
      std::string single;
      AppendUtf8(c, &single);
      const int32_t token = vocab_.Find(single);
      if (token < 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            "byte 0x", absl::Hex(unicode_to_byte_.at(c), absl::kZeroPad2),
            " has no token in this byte-level vocabulary"));
      }
      ids->push_back(token);
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<int32_t>> BpeTokenizer::Encode(absl::string_view text,
                                                          const EncodeOptions& options) const {
  if (auto status = ValidateUtf8(text); !status.ok()) return status;
  std::vector<int32_t> ids;
  if (options.add_bos && config_.add_bos && config_.bos_id >= 0) ids.push_back(config_.bos_id);
  for (const Fragment& fragment : splitter_.Split(text, options.parse_special)) {
    if (fragment.token >= 0) {
      ids.push_back(fragment.token);
      continue;
    }
    for (absl::string_view word : pre_tokenizer_.Split(fragment.text)) {
      if (auto status = EncodeWord(word, &ids); !status.ok()) return status;
    }
  }
  return ids;
}

std::string BpeTokenizer::TokenText(int32_t token, int32_t previous_token) const {
  if (token < 0 || token >= vocab_.size()) return "";
  const TokenKind kind = vocab_.kinds[token];
  if (kind == TokenKind::kControl) return "";
  const std::string& piece = vocab_.pieces[token];
  if (kind == TokenKind::kUserDefined) return piece;
  std::string text;
  text.reserve(piece.size());
  for (const char32_t c : DecodeUtf8(piece)) {
    auto it = unicode_to_byte_.find(c);
    if (it != unicode_to_byte_.end()) {
      text.push_back(static_cast<char>(it->second));
    } else {
      AppendUtf8(c, &text);  // not a byte stand-in: the character itself
    }
  }
  return text;
}

std::string BpeTokenizer::TokenPiece(int32_t token) const {
  if (token < 0 || token >= vocab_.size()) return absl::StrCat("<invalid token ", token, ">");
  return vocab_.pieces[token];
}

}  // namespace pdserve::tokenizer
