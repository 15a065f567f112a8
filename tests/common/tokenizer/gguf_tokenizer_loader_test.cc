// LoadGgufTokenizer on small GGUF files written in memory: settings, defaults and errors.

#include <memory>
#include <string>
#include <vector>

#include "common/gguf/gguf_file.h"
#include "common/tokenizer/tokenizer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/common/gguf/gguf_builder.h"
#include "tests/common/tokenizer/test_util.h"

namespace pdserve::tokenizer {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::UnorderedElementsAre;
using gguf::testing::GgufBuilder;

// A byte-level vocabulary: the 256 byte stand-ins, two merges, then control tokens.
GgufBuilder TinyGpt2() {
  std::vector<std::string> tokens;
  char32_t next_stand_in = 256;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
    const char32_t c = printable ? b : next_stand_in++;
    std::string utf8;
    if (c < 0x80) {
      utf8 = std::string(1, static_cast<char>(c));
    } else {
      utf8 = {static_cast<char>(0xC0 | (c >> 6)), static_cast<char>(0x80 | (c & 0x3F))};
    }
    tokens.push_back(utf8);
  }
  tokens.push_back("he");                // 256
  tokens.push_back("\xC4\xA0" "he");     // 257 "Ġhe"
  tokens.push_back("<|endoftext|>");     // 258
  tokens.push_back("<|eot_id|>");        // 259
  tokens.push_back("<|im_end|>");        // 260: not control below, so not an end id
  std::vector<int32_t> types(tokens.size(), 1);
  types[258] = types[259] = 3;
  GgufBuilder builder;
  builder.SetString("general.architecture", "llama")
      .SetString("tokenizer.ggml.model", "gpt2")
      .SetString("tokenizer.ggml.pre", "gpt2")
      .SetStringArray("tokenizer.ggml.tokens", tokens)
      .SetI32Array("tokenizer.ggml.token_type", types)
      .SetStringArray("tokenizer.ggml.merges", {"h e", "\xC4\xA0 he"})
      .SetU32("tokenizer.ggml.bos_token_id", 258)
      .SetU32("tokenizer.ggml.eos_token_id", 258);
  return builder;
}

absl::StatusOr<std::unique_ptr<Tokenizer>> Load(const GgufBuilder& builder,
                                                std::vector<uint8_t>* bytes) {
  *bytes = builder.Build();
  auto file = gguf::GgufFile::Parse(*bytes, "tiny.gguf");
  if (!file.ok()) return file.status();
  return LoadGgufTokenizer(**file);
}

TEST(GgufTokenizerLoaderTest, ByteLevelBpeFromMetadata) {
  std::vector<uint8_t> bytes;
  auto tokenizer = Load(TinyGpt2(), &bytes);
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  EXPECT_THAT(*(*tokenizer)->Encode("he he", {}), ElementsAre(256, 257));
  EXPECT_THAT((*tokenizer)->end_of_generation_ids(), UnorderedElementsAre(258, 259));
  EXPECT_EQ(testing::Decode(**tokenizer, {256, 257, 258}), "he he");
}

TEST(GgufTokenizerLoaderTest, AddBosTokenAndEotKeys) {
  std::vector<uint8_t> bytes;
  auto tokenizer = Load(TinyGpt2()
                            .SetBool("tokenizer.ggml.add_bos_token", true)
                            .SetU32("tokenizer.ggml.eot_token_id", 260),
                        &bytes);
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  EXPECT_THAT(*(*tokenizer)->Encode("he", {}), ElementsAre(258, 256));
  EXPECT_THAT(*(*tokenizer)->Encode("he", {.add_bos = false}), ElementsAre(256));
  EXPECT_THAT((*tokenizer)->end_of_generation_ids(), UnorderedElementsAre(258, 259, 260));
}

TEST(GgufTokenizerLoaderTest, UnsupportedPreTokenizerIsNamed) {
  std::vector<uint8_t> bytes;
  auto tokenizer = Load(TinyGpt2().SetString("tokenizer.ggml.pre", "chameleon"), &bytes);
  ASSERT_FALSE(tokenizer.ok());
  EXPECT_THAT(std::string(tokenizer.status().message()), HasSubstr("'chameleon'"));
  EXPECT_THAT(std::string(tokenizer.status().message()), HasSubstr("tiny.gguf"));
}

TEST(GgufTokenizerLoaderTest, UnsupportedModelIsNamed) {
  std::vector<uint8_t> bytes;
  auto tokenizer = Load(TinyGpt2().SetString("tokenizer.ggml.model", "bert"), &bytes);
  ASSERT_FALSE(tokenizer.ok());
  EXPECT_THAT(std::string(tokenizer.status().message()), HasSubstr("'bert'"));
}

TEST(GgufTokenizerLoaderTest, MalformedMetadataIsAnError) {
  std::vector<uint8_t> bytes;
  EXPECT_FALSE(Load(TinyGpt2().RemoveKey("tokenizer.ggml.tokens"), &bytes).ok());
  EXPECT_FALSE(Load(TinyGpt2().RemoveKey("tokenizer.ggml.merges"), &bytes).ok());
  EXPECT_FALSE(Load(TinyGpt2().RemoveKey("tokenizer.ggml.model"), &bytes).ok());
  EXPECT_FALSE(Load(TinyGpt2().SetI32Array("tokenizer.ggml.token_type", {1, 1}), &bytes).ok());
  EXPECT_FALSE(
      Load(TinyGpt2().SetStringArray("tokenizer.ggml.merges", {"nospace"}), &bytes).ok());
  EXPECT_FALSE(Load(TinyGpt2().SetString("tokenizer.ggml.tokens", "x"), &bytes).ok());
}

TEST(GgufTokenizerLoaderTest, SentencePieceDefaultsAndScoresCheck) {
  GgufBuilder builder;
  builder.SetString("tokenizer.ggml.model", "llama")
      .SetStringArray("tokenizer.ggml.tokens",
                      {"<unk>", "<s>", "</s>", "\xE2\x96\x81", "a", "\xE2\x96\x81" "a"})
      .SetF32Array("tokenizer.ggml.scores", {0, 0, 0, -1, -2, -1})
      .SetI32Array("tokenizer.ggml.token_type", {2, 3, 3, 1, 1, 1});
  std::vector<uint8_t> bytes;
  // No bos/eos keys: llama.cpp's defaults 1 and 2; BOS and the dummy prefix on by default.
  auto tokenizer = Load(builder, &bytes);
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  EXPECT_THAT(*(*tokenizer)->Encode("a", {}), ElementsAre(1, 5));
  EXPECT_THAT((*tokenizer)->end_of_generation_ids(), ElementsAre(2));

  builder.SetBool("tokenizer.ggml.add_space_prefix", false)
      .SetBool("tokenizer.ggml.add_bos_token", false);
  tokenizer = Load(builder, &bytes);
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  EXPECT_THAT(*(*tokenizer)->Encode("a", {}), ElementsAre(4));

  builder.SetF32Array("tokenizer.ggml.scores", {0, 0});
  EXPECT_FALSE(Load(builder, &bytes).ok());
}

}  // namespace
}  // namespace pdserve::tokenizer
