// Pre-tokenizers against the splits Hugging Face `tokenizers` 0.23.3 makes with the same
// regular expressions (Split(Regex(...), "isolated"), SmolLM2: Digits(individual_digits) first).

#include "common/tokenizer/pre_tokenizer.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace pdserve::tokenizer {
namespace {

struct SplitCase {
  std::string pre_tokenizer;
  std::string text;
  std::vector<std::string> words;
};

TEST(PreTokenizerTest, SplitsAsHuggingFaceDoes) {
  const std::vector<SplitCase> cases = {
      {"gpt2", "Hello world", {"Hello", " world"}},
      {"gpt2", "I'm  fine,   you'LL see!!\n\n x", {"I", "'m", " ", " fine", ",", "  ", " you", "'", "LL", " see", "!!", "\n\n", " x"}},
      {"gpt2", "price: 1234567 dollars", {"price", ":", " 1234567", " dollars"}},
      {"gpt2", " \t\n  a\r\nb  ", {" \t\n ", " a", "\r", "\n", "b", "  "}},
      {"gpt2", "café 你好。 😀😀", {"café", " 你好", "。", " 😀😀"}},
      {"gpt2", "x\u00a0\u00a0y ²½", {"x", "\u00a0", "\u00a0", "y", " ²½"}},
      {"smollm", "Hello world", {"Hello", " world"}},
      {"smollm", "I'm  fine,   you'LL see!!\n\n x", {"I", "'m", " ", " fine", ",", "  ", " you", "'", "LL", " see", "!!", "\n\n", " x"}},
      {"smollm", "price: 1234567 dollars", {"price", ":", " ", "1", "2", "3", "4", "5", "6", "7", " dollars"}},
      {"smollm", " \t\n  a\r\nb  ", {" \t\n ", " a", "\r", "\n", "b", "  "}},
      {"smollm", "café 你好。 😀😀", {"café", " 你好", "。", " 😀😀"}},
      {"smollm", "x\u00a0\u00a0y ²½", {"x", "\u00a0", "\u00a0", "y", " ", "²", "½"}},
      {"llama-bpe", "Hello world", {"Hello", " world"}},
      {"llama-bpe", "I'm  fine,   you'LL see!!\n\n x", {"I", "'m", " ", " fine", ",", "  ", " you", "'LL", " see", "!!\n\n", " x"}},
      {"llama-bpe", "price: 1234567 dollars", {"price", ":", " ", "123", "456", "7", " dollars"}},
      {"llama-bpe", " \t\n  a\r\nb  ", {" \t\n", " ", " a", "\r\n", "b", "  "}},
      {"llama-bpe", "café 你好。 😀😀", {"café", " 你好", "。", " 😀😀"}},
      {"llama-bpe", "x\u00a0\u00a0y ²½", {"x", "\u00a0", "\u00a0y", " ", "²½"}},
      {"qwen2", "Hello world", {"Hello", " world"}},
      {"qwen2", "I'm  fine,   you'LL see!!\n\n x", {"I", "'m", " ", " fine", ",", "  ", " you", "'LL", " see", "!!\n\n", " x"}},
      {"qwen2", "price: 1234567 dollars", {"price", ":", " ", "1", "2", "3", "4", "5", "6", "7", " dollars"}},
      {"qwen2", " \t\n  a\r\nb  ", {" \t\n", " ", " a", "\r\n", "b", "  "}},
      {"qwen2", "café 你好。 😀😀", {"café", " 你好", "。", " 😀😀"}},
      {"qwen2", "x\u00a0\u00a0y ²½", {"x", "\u00a0", "\u00a0y", " ", "²", "½"}},
  };
  for (const SplitCase& c : cases) {
    auto pre = PreTokenizer::ForName(c.pre_tokenizer);
    ASSERT_TRUE(pre.ok()) << pre.status();
    std::vector<std::string> words;
    for (absl::string_view word : pre->Split(c.text)) words.emplace_back(word);
    EXPECT_EQ(words, c.words) << c.pre_tokenizer << ": " << c.text;
  }
}

TEST(PreTokenizerTest, EmptyTextHasNoWords) {
  auto pre = PreTokenizer::ForName("smollm");
  ASSERT_TRUE(pre.ok());
  EXPECT_TRUE(pre->Split("").empty());
}

TEST(PreTokenizerTest, IgnoreMergesOnlyForLlama3Style) {
  EXPECT_TRUE(PreTokenizer::ForName("llama-bpe")->ignore_merges());
  EXPECT_FALSE(PreTokenizer::ForName("smollm")->ignore_merges());
  EXPECT_FALSE(PreTokenizer::ForName("gpt2")->ignore_merges());
}

TEST(PreTokenizerTest, UnsupportedNameIsAnErrorNamingIt) {
  auto pre = PreTokenizer::ForName("deepseek-coder");
  ASSERT_FALSE(pre.ok());
  EXPECT_EQ(pre.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(pre.status().message()), ::testing::HasSubstr("'deepseek-coder'"));
}

}  // namespace
}  // namespace pdserve::tokenizer
