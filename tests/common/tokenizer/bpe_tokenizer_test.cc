// The byte-level BPE tokenizer of SmolLM2-135M-Instruct (GGUF `gpt2`, pre-tokenizer `smollm`).
// Expected ids come from Hugging Face `tokenizers` 0.23.3 built from the same GGUF vocabulary and
// merges with SmolLM2's pre-tokenizer (see test_tokenizer_hf.py, which checks many more).
// Needs the `smollm2` fixture: without the model these tests fail.

#include "common/tokenizer/bpe_tokenizer.h"

#include <memory>
#include <string>
#include <vector>

#include "common/gguf/gguf_file.h"
#include "common/tokenizer/chat_template.h"
#include "common/tokenizer/tokenizer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/common/tokenizer/test_util.h"

namespace pdserve::tokenizer {
namespace {

using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using ::testing::Not;
using testing::Decode;

constexpr int32_t kEndOfText = 0;  // <|endoftext|>
constexpr int32_t kImStart = 1;    // <|im_start|>
constexpr int32_t kImEnd = 2;      // <|im_end|>

class SmolLm2TokenizerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto opened = gguf::GgufFile::Open(testing::SmolLm2Path());
    ASSERT_TRUE(opened.ok()) << opened.status() << " (the smollm2 fixture fetches the model)";
    file_ = opened->release();
    auto loaded = LoadGgufTokenizer(*file_);
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    tokenizer_ = loaded->release();
  }
  static void TearDownTestSuite() {
    delete tokenizer_;
    delete file_;
    tokenizer_ = nullptr;
    file_ = nullptr;
  }
  void SetUp() override { ASSERT_NE(tokenizer_, nullptr); }

  static std::vector<int32_t> Encode(const std::string& text, EncodeOptions options = {}) {
    auto ids = tokenizer_->Encode(text, options);
    EXPECT_TRUE(ids.ok()) << ids.status();
    return ids.ok() ? *ids : std::vector<int32_t>{};
  }

  static inline gguf::GgufFile* file_ = nullptr;
  static inline Tokenizer* tokenizer_ = nullptr;
};

TEST_F(SmolLm2TokenizerTest, Basics) {
  EXPECT_EQ(tokenizer_->vocab_size(), 49152);
  EXPECT_EQ(tokenizer_->bos_id(), kImStart);
  EXPECT_EQ(tokenizer_->TokenPiece(905), "\xC4\xA0world");  // "Ġworld"
  EXPECT_EQ(tokenizer_->TokenText(905, -1), " world");
  EXPECT_EQ(tokenizer_->TokenText(kImEnd, 905), "");  // control tokens give no text
}

// The file says tokenizer.ggml.add_bos_token = false, and Hugging Face's tokenizer for SmolLM2
// adds nothing either: the chat template opens every turn with <|im_start|> itself.
TEST_F(SmolLm2TokenizerTest, AddsNoBos) {
  EXPECT_THAT(Encode("Hello world"), ElementsAre(19556, 905));
  EXPECT_TRUE(Encode("").empty());
}

TEST_F(SmolLm2TokenizerTest, MatchesHuggingFace) {
  // Digits are split one by one (the `smollm` pre-tokenizer), spaces before punctuation stay.
  EXPECT_THAT(Encode("Hello world, it's 12345 test  !"),
              ElementsAre(19556, 905, 28, 357, 506, 216, 33, 34, 35, 36, 37, 1028, 216, 5728));
  EXPECT_THAT(Encode("caf\xC3\xA9 \xE4\xBD\xA0\xE5\xA5\xBD \xF0\x9F\x98\x80"),
              ElementsAre(83, 1939, 2756, 216, 18645, 250, 48392, 138, 40303, 218));
}

TEST_F(SmolLm2TokenizerTest, EndOfGenerationIds) {
  EXPECT_THAT(tokenizer_->end_of_generation_ids(),
              ::testing::UnorderedElementsAre(kEndOfText, kImEnd));
}

TEST_F(SmolLm2TokenizerTest, SpecialTokensParsedOnlyWhenAsked) {
  const std::string text = "<|im_start|>user\nHi<|im_end|>";
  EXPECT_THAT(Encode(text, {.parse_special = true}), ElementsAre(kImStart, 4093, 198, 26843, kImEnd));
  const std::vector<int32_t> plain = Encode(text);
  EXPECT_THAT(plain, Not(Contains(kImStart)));
  EXPECT_THAT(plain, Not(Contains(kImEnd)));
  EXPECT_EQ(Decode(*tokenizer_, plain), text);
}

TEST_F(SmolLm2TokenizerTest, RoundTrips) {
  for (const std::string text :
       {"The quick brown fox.", "  leading and trailing  ", "tabs\tand\r\nnewlines\n\n\n",
        "numbers 3.14159 and 1,000,000", "don't won't I'LL", "na\xC3\xAFve \xC3\x9C" "ber",
        "\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E\xE3\x81\xAE\xE6\x96\x87",
        "\xF0\x9F\x91\x8D\xF0\x9F\x8F\xBD \xF0\x9F\x8E\x89", "x = f(y) + 1; // c",
        "\xC2\xA0nbsp\xE3\x80\x80ideographic space"}) {
    EXPECT_EQ(Decode(*tokenizer_, Encode(text)), text) << text;
  }
}

TEST_F(SmolLm2TokenizerTest, InvalidUtf8IsAnError) {
  auto ids = tokenizer_->Encode("ok so far \xE2\x82", {});
  ASSERT_FALSE(ids.ok());
  EXPECT_EQ(ids.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(ids.status().message()), HasSubstr("byte offset 10"));
}

TEST_F(SmolLm2TokenizerTest, ChatPromptFromTheModelsTemplate) {
  auto source = file_->GetString("tokenizer.chat_template");
  ASSERT_TRUE(source.ok()) << source.status();
  auto chat = ChatTemplate::FromSource(*source);
  ASSERT_TRUE(chat.ok()) << chat.status();
  auto prompt = chat->Render({{"user", "Hi"}}, true);
  ASSERT_TRUE(prompt.ok());
  EXPECT_THAT(Encode(*prompt, {.parse_special = true}),
              ElementsAreArray({1, 9690, 198, 2683, 359, 253, 5356, 5646, 11173, 3365, 3511,
                                308, 34519, 28, 7018, 411, 407, 19712, 8182, 2, 198, 1, 4093,
                                198, 26843, 2, 198, 1, 520, 9531, 198}));
}

}  // namespace
}  // namespace pdserve::tokenizer
