#include "common/tokenizer/utf8.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace pdserve::tokenizer {
namespace {

TEST(Utf8Test, AcceptsWellFormedText) {
  for (const std::string& text : std::vector<std::string>{"", "plain ascii", "caf\xC3\xA9", "\xE4\xBD\xA0\xE5\xA5\xBD", "\xF0\x9F\x98\x80",
        "\xF4\x8F\xBF\xBF", "\xEF\xBF\xBF", std::string("nul\0inside", 10)}) {
    EXPECT_TRUE(ValidateUtf8(text).ok()) << text;
  }
}

TEST(Utf8Test, RejectsMalformedTextNamingTheOffset) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"ab\x80", "byte offset 2"},              // lone continuation byte
      {"abc\xC3", "byte offset 3"},             // truncated at the end
      {"\xE4\xBD" "x", "byte offset 2"},        // continuation expected at 2
      {"x\xC0\xAF", "byte offset 1"},           // overlong '/'
      {"\xE0\x80\x80", "byte offset 0"},        // overlong NUL
      {"ok\xED\xA0\x80", "byte offset 2"},      // UTF-16 surrogate
      {"\xF4\x90\x80\x80", "byte offset 0"},    // above U+10FFFF
      {"\xF8\x88\x80\x80\x80", "byte offset 0"},  // 5-byte form
      {"\xFF", "byte offset 0"},
  };
  for (const auto& [text, where] : cases) {
    const absl::Status status = ValidateUtf8(text);
    ASSERT_FALSE(status.ok());
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(status.message()), ::testing::HasSubstr(where));
  }
}

TEST(Utf8Test, DecodesAndEncodes) {
  const std::string text = "a\xC3\xA9\xE4\xBD\xA0\xF0\x9F\x98\x80";
  const std::vector<char32_t> code_points = DecodeUtf8(text);
  EXPECT_EQ(code_points, (std::vector<char32_t>{U'a', 0xE9, 0x4F60, 0x1F600}));
  std::string back;
  for (char32_t c : code_points) AppendUtf8(c, &back);
  EXPECT_EQ(back, text);
}

}  // namespace
}  // namespace pdserve::tokenizer
