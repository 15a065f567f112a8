#include "common/tokenizer/vocabulary.h"

#include <algorithm>

namespace pdserve::tokenizer {

void Vocabulary::BuildIndex() {
  piece_to_id.clear();
  piece_to_id.reserve(pieces.size());
  for (int32_t id = 0; id < size(); ++id) piece_to_id[pieces[id]] = id;
}

int32_t Vocabulary::Find(absl::string_view piece) const {
  auto it = piece_to_id.find(piece);
  return it == piece_to_id.end() ? -1 : it->second;
}

SpecialTokenSplitter::SpecialTokenSplitter(const Vocabulary& vocab) : by_first_byte_(256) {
  for (int32_t id = 0; id < vocab.size(); ++id) {
    const TokenKind kind = vocab.kinds[id];
    if (kind != TokenKind::kControl && kind != TokenKind::kUserDefined &&
        kind != TokenKind::kUnknown) {
      continue;
    }
    const std::string& text = vocab.pieces[id];
    if (text.empty()) continue;
    by_first_byte_[static_cast<unsigned char>(text[0])].push_back(
        Entry{text, id, kind == TokenKind::kUserDefined});
  }
  for (auto& entries : by_first_byte_) {
    std::stable_sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
      return a.text.size() > b.text.size();
    });
  }
}

std::vector<Fragment> SpecialTokenSplitter::Split(absl::string_view text,
                                                  bool parse_special) const {
  std::vector<Fragment> fragments;
  size_t text_begin = 0;
  size_t i = 0;
  while (i < text.size()) {
    const Entry* match = nullptr;
    for (const Entry& entry : by_first_byte_[static_cast<unsigned char>(text[i])]) {
      if (!parse_special && !entry.always) continue;
      if (text.substr(i, entry.text.size()) == entry.text) {
        match = &entry;
        break;
      }
    }
    if (match == nullptr) {
      ++i;
      continue;
    }
    if (i > text_begin) fragments.push_back(Fragment{text.substr(text_begin, i - text_begin)});
    fragments.push_back(Fragment{absl::string_view(), match->token});
    i += match->text.size();
    text_begin = i;
  }
  if (text_begin < text.size()) fragments.push_back(Fragment{text.substr(text_begin)});
  return fragments;
}

}  // namespace pdserve::tokenizer
