// SentencePiece-style tokenizers from llama2.c's tok512.bin and from stories260K.gguf: the
// goldens, agreement between the two files, round trips and errors.

#include "common/tokenizer/sentencepiece_tokenizer.h"

#include <cstdio>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "common/gguf/gguf_file.h"
#include "common/tokenizer/tokenizer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/common/tokenizer/test_util.h"

namespace pdserve::tokenizer {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using testing::Decode;
using testing::ReadGoldens;
using testing::SharedPath;

constexpr int32_t kStoriesVocab = 512;

std::unique_ptr<Tokenizer> LoadBin() {
  auto tokenizer = LoadLlama2cTokenizer(SharedPath("models/tok512.bin"), kStoriesVocab);
  EXPECT_TRUE(tokenizer.ok()) << tokenizer.status();
  return tokenizer.ok() ? *std::move(tokenizer) : nullptr;
}

// The GgufFile must outlive nothing: the tokenizer copies what it needs.
std::unique_ptr<Tokenizer> LoadGguf() {
  auto file = gguf::GgufFile::Open(SharedPath("models/stories260K.gguf"));
  EXPECT_TRUE(file.ok()) << file.status();
  if (!file.ok()) return nullptr;
  auto tokenizer = LoadGgufTokenizer(**file);
  EXPECT_TRUE(tokenizer.ok()) << tokenizer.status();
  return tokenizer.ok() ? *std::move(tokenizer) : nullptr;
}

class StoriesTokenizerTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    tokenizer_ = GetParam() ? LoadGguf() : LoadBin();
    ASSERT_NE(tokenizer_, nullptr);
  }
  std::vector<int32_t> Encode(const std::string& text, EncodeOptions options = {}) {
    auto ids = tokenizer_->Encode(text, options);
    EXPECT_TRUE(ids.ok()) << ids.status();
    return ids.ok() ? *ids : std::vector<int32_t>{};
  }
  std::unique_ptr<Tokenizer> tokenizer_;
};

TEST_P(StoriesTokenizerTest, ReproducesGoldenPromptIds) {
  const std::vector<testing::GoldenCase> goldens = ReadGoldens();
  ASSERT_FALSE(goldens.empty());
  for (const auto& golden : goldens) {
    EXPECT_EQ(Encode(golden.prompt), golden.prompt_ids) << golden.prompt;
  }
}

TEST_P(StoriesTokenizerTest, DecodesGoldenContinuations) {
  for (const auto& golden : ReadGoldens()) {
    EXPECT_EQ(Decode(*tokenizer_, golden.output_ids, golden.prompt_ids.back()),
              golden.continuation)
        << golden.prompt;
    // The prompt itself decodes back, its dummy prefix space dropped after BOS.
    EXPECT_EQ(Decode(*tokenizer_, golden.prompt_ids), golden.prompt);
  }
}

TEST_P(StoriesTokenizerTest, Basics) {
  EXPECT_EQ(tokenizer_->vocab_size(), kStoriesVocab);
  EXPECT_EQ(tokenizer_->bos_id(), 1);
  EXPECT_THAT(Encode(""), ElementsAre(1));
  EXPECT_TRUE(Encode("", {.add_bos = false}).empty());
  const std::vector<int32_t> with_bos = Encode("Once upon a time");
  const std::vector<int32_t> without_bos = Encode("Once upon a time", {.add_bos = false});
  EXPECT_EQ(std::vector<int32_t>(with_bos.begin() + 1, with_bos.end()), without_bos);
  EXPECT_EQ(tokenizer_->TokenText(1, -1), "");  // control tokens give no text
  EXPECT_EQ(tokenizer_->TokenText(2, 5), "");
  EXPECT_EQ(tokenizer_->TokenPiece(1), "<s>");
  EXPECT_EQ(tokenizer_->TokenText(3 + 0xE4, -1), "\xE4");  // byte token <0xE4>
  EXPECT_EQ(tokenizer_->TokenText(3 + '\n', -1), "\n");
}

TEST_P(StoriesTokenizerTest, EndOfGenerationIds) {
  const std::vector<int32_t>& ids = tokenizer_->end_of_generation_ids();
  EXPECT_THAT(ids, ::testing::Contains(2));
  if (!GetParam()) {
    EXPECT_THAT(ids, ::testing::UnorderedElementsAre(1, 2));
  }
}

TEST_P(StoriesTokenizerTest, RoundTrips) {
  for (const std::string text :
       {"Hello world", "  two leading spaces", "trailing  ", "tabs\tand\nnewlines\n\n",
        "Caf\xC3\xA9 na\xC3\xAFve", "\xE4\xBD\xA0\xE5\xA5\xBD\xE4\xB8\x96\xE7\x95\x8C",
        "emoji \xF0\x9F\x98\x80!", "punct: \"quoted\", (paren) [x]; {y}?", "123456789 0.5e-3",
        "x"}) {
    const std::vector<int32_t> ids = Encode(text);
    EXPECT_EQ(Decode(*tokenizer_, ids), text) << text;
  }
}

TEST_P(StoriesTokenizerTest, UnknownCharactersFallBackToBytes) {
  // U+4F60 has no piece in a 512-token vocabulary: three byte tokens, after the space piece.
  const std::vector<int32_t> ids = Encode("\xE4\xBD\xA0", {.add_bos = false});
  ASSERT_GE(ids.size(), 3u);
  EXPECT_THAT(std::vector<int32_t>(ids.end() - 3, ids.end()),
              ElementsAre(3 + 0xE4, 3 + 0xBD, 3 + 0xA0));
}

TEST_P(StoriesTokenizerTest, InvalidUtf8NamesTheOffset) {
  for (const auto& [text, offset] : std::vector<std::pair<std::string, int>>{
           {"abc\xFF", 3}, {"ab\xC3", 2}, {"a\xE4\xBD" "b", 3}, {"\xC0\x80", 0},
           {"xx\xED\xA0\x80", 2}, {"\xF4\x90\x80\x80", 0}}) {
    auto ids = tokenizer_->Encode(text, {});
    ASSERT_FALSE(ids.ok()) << text;
    EXPECT_EQ(ids.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(ids.status().message()),
                HasSubstr("byte offset " + std::to_string(offset)));
  }
}

TEST_P(StoriesTokenizerTest, ParsesSpecialTokensOnlyWhenAsked) {
  EXPECT_THAT(Encode("<s>", {.add_bos = false, .parse_special = true}), ElementsAre(1));
  const std::vector<int32_t> plain = Encode("<s>", {.add_bos = false});
  EXPECT_THAT(plain, ::testing::Not(::testing::Contains(1)));
  EXPECT_EQ(Decode(*tokenizer_, plain), " <s>");
  // After a special token a new dummy prefix space starts the text, as in llama.cpp.
  const std::vector<int32_t> mixed = Encode("a</s>a", {.add_bos = false, .parse_special = true});
  const std::vector<int32_t> a = Encode("a", {.add_bos = false});
  std::vector<int32_t> expected = a;
  expected.push_back(2);
  expected.insert(expected.end(), a.begin(), a.end());
  EXPECT_EQ(mixed, expected);
}

INSTANTIATE_TEST_SUITE_P(BinAndGguf, StoriesTokenizerTest, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "Gguf" : "Llama2c"; });

TEST(SentencePieceTokenizerTest, BinAndGgufAgree) {
  std::unique_ptr<Tokenizer> bin = LoadBin();
  std::unique_ptr<Tokenizer> gguf_tokenizer = LoadGguf();
  ASSERT_NE(bin, nullptr);
  ASSERT_NE(gguf_tokenizer, nullptr);
  for (int32_t id = 0; id < bin->vocab_size(); ++id) {
    EXPECT_EQ(bin->TokenPiece(id), gguf_tokenizer->TokenPiece(id)) << id;
  }
  for (const std::string text : {"The quick brown fox jumps over the lazy dog.",
                                 "Tom's   dog\n\nsaid: \"hi!\"", "\xC3\xA9t\xC3\xA9 2024"}) {
    EXPECT_EQ(*bin->Encode(text, {}), *gguf_tokenizer->Encode(text, {})) << text;
  }
}

TEST(SentencePieceTokenizerTest, MergesByScoreLeftmostFirst) {
  // "ab" and "bc" are both pieces; "bc" scores higher so it wins over the leftmost pair.
  Vocabulary vocab;
  vocab.pieces = {"<unk>", "<s>", "</s>", "\xE2\x96\x81", "a", "b", "c", "ab", "bc"};
  vocab.scores = {0, 0, 0, -1, -1, -1, -1, -3, -2};
  vocab.kinds = {TokenKind::kUnknown, TokenKind::kControl, TokenKind::kControl,
                 TokenKind::kNormal,  TokenKind::kNormal,  TokenKind::kNormal,
                 TokenKind::kNormal,  TokenKind::kNormal,  TokenKind::kNormal};
  SentencePieceConfig config;
  config.bos_id = 1;
  config.unk_id = 0;
  auto tokenizer = SentencePieceTokenizer::Create(vocab, config);
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  EXPECT_THAT(*(*tokenizer)->Encode("abc", {}), ElementsAre(1, 3, 4, 8));
  // Equal scores: the leftmost pair merges first.
  vocab.scores[7] = vocab.scores[8] = -2;
  tokenizer = SentencePieceTokenizer::Create(vocab, config);
  ASSERT_TRUE(tokenizer.ok());
  EXPECT_THAT(*(*tokenizer)->Encode("abc", {}), ElementsAre(1, 3, 7, 6));
  // No byte tokens: an unknown character becomes <unk>.
  EXPECT_THAT(*(*tokenizer)->Encode("x", {.add_bos = false}), ElementsAre(3, 0));
}

class Llama2cFileTest : public ::testing::Test {
 protected:
  std::string WriteTemp(const std::string& bytes) {
    path_ = ::testing::TempDir() + "/tok_test.bin";
    std::ofstream(path_, std::ios::binary) << bytes;
    return path_;
  }
  void TearDown() override {
    if (!path_.empty()) std::remove(path_.c_str());
  }
  std::string path_;
};

TEST_F(Llama2cFileTest, RejectsWrongVocabSizeAndTruncation) {
  std::ifstream in(SharedPath("models/tok512.bin"), std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_FALSE(bytes.empty());

  auto too_small = LoadLlama2cTokenizer(SharedPath("models/tok512.bin"), 500);
  ASSERT_FALSE(too_small.ok());
  EXPECT_THAT(std::string(too_small.status().message()), HasSubstr("vocab_size"));

  auto too_big = LoadLlama2cTokenizer(SharedPath("models/tok512.bin"), 513);
  ASSERT_FALSE(too_big.ok());
  EXPECT_THAT(std::string(too_big.status().message()), HasSubstr("token 512"));

  auto truncated = LoadLlama2cTokenizer(WriteTemp(bytes.substr(0, bytes.size() - 3)), 512);
  ASSERT_FALSE(truncated.ok());
  EXPECT_EQ(truncated.status().code(), absl::StatusCode::kInvalidArgument);

  auto missing = LoadLlama2cTokenizer("/nonexistent/tok.bin", 512);
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace pdserve::tokenizer
