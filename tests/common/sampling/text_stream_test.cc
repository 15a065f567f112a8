#include "common/sampling/text_stream.h"

#include <random>
#include <string>
#include <vector>

#include <utf8proc.h>

#include "gtest/gtest.h"

namespace pdserve::sampling {
namespace {

const std::string kFffd = "\xEF\xBF\xBD";

// Independent check with utf8proc: well-formed UTF-8 (no overlongs, surrogates, truncation).
bool IsValidUtf8(const std::string& s) {
  const auto* p = reinterpret_cast<const utf8proc_uint8_t*>(s.data());
  utf8proc_ssize_t left = static_cast<utf8proc_ssize_t>(s.size());
  while (left > 0) {
    utf8proc_int32_t cp;
    const utf8proc_ssize_t n = utf8proc_iterate(p, left, &cp);
    if (n <= 0) return false;
    p += n;
    left -= n;
  }
  return true;
}

struct StreamResult {
  std::vector<std::string> pieces;  // what each Push returned
  std::string text;                 // everything emitted, Flush included
  bool stopped = false;
  int stop_index = -1;
};

StreamResult Feed(const std::vector<std::string>& tokens, const std::vector<std::string>& stops) {
  TextStream stream(stops);
  StreamResult run;
  for (const std::string& token : tokens) {
    TextStreamStep step = stream.Push(token);
    EXPECT_TRUE(IsValidUtf8(step.text)) << "invalid UTF-8 emitted";
    run.pieces.push_back(step.text);
    run.text += step.text;
    if (step.stopped && !run.stopped) {
      run.stopped = true;
      run.stop_index = step.stop_index;
    }
    EXPECT_EQ(stream.stopped(), run.stopped);
  }
  const std::string tail = stream.Flush();
  EXPECT_TRUE(IsValidUtf8(tail));
  run.text += tail;
  return run;
}

TEST(TextStreamTest, PlainAsciiPassesThrough) {
  const StreamResult run = Feed({"Hello", ",", " world"}, {});
  EXPECT_EQ(run.pieces, (std::vector<std::string>{"Hello", ",", " world"}));
  EXPECT_EQ(run.text, "Hello, world");
  EXPECT_FALSE(run.stopped);
}

TEST(TextStreamTest, TwoByteCharSplitOverTwoPieces) {
  // é = C3 A9
  const StreamResult run = Feed({"caf\xC3", "\xA9!"}, {});
  EXPECT_EQ(run.pieces, (std::vector<std::string>{"caf", "\xC3\xA9!"}));
  EXPECT_EQ(run.text, "café!");
}

TEST(TextStreamTest, CjkCharSplitOverThreePieces) {
  // 中 = E4 B8 AD
  const StreamResult run = Feed({"\xE4", "\xB8", "\xAD", "文"}, {});
  EXPECT_EQ(run.pieces, (std::vector<std::string>{"", "", "中", "文"}));
  EXPECT_EQ(run.text, "中文");
}

TEST(TextStreamTest, EmojiSplitOverFourPieces) {
  // 😀 = F0 9F 98 80
  const StreamResult run = Feed({"a\xF0", "\x9F", "\x98", "\x80z"}, {});
  EXPECT_EQ(run.pieces, (std::vector<std::string>{"a", "", "", "😀z"}));
  EXPECT_EQ(run.text, "a😀z");
}

TEST(TextStreamTest, EverySplitIntoBytesReassembles) {
  const std::string text = "aé中😀b ñ€𝄞.";
  std::vector<std::string> bytes;
  for (char c : text) bytes.push_back(std::string(1, c));
  const StreamResult run = Feed(bytes, {});
  EXPECT_EQ(run.text, text);
}

TEST(TextStreamTest, IncompleteTailAtEndBecomesReplacementChar) {
  const StreamResult run = Feed({"ab", "\xE4\xB8"}, {});
  EXPECT_EQ(run.pieces, (std::vector<std::string>{"ab", ""}));
  EXPECT_EQ(run.text, "ab" + kFffd);
}

TEST(TextStreamTest, InvalidBytesAreReplacedNotHeld) {
  const StreamResult run = Feed({"a\xFF", "b\xC3", "x"}, {});
  EXPECT_EQ(run.pieces, (std::vector<std::string>{"a" + kFffd, "b", kFffd + "x"}));
}

TEST(TextStreamTest, StopStringSpanningPieces) {
  const StreamResult run = Feed({"Hello <", "/", "s> more"}, {"</s>"});
  EXPECT_EQ(run.pieces, (std::vector<std::string>{"Hello ", "", ""}));
  EXPECT_TRUE(run.stopped);
  EXPECT_EQ(run.stop_index, 0);
  EXPECT_EQ(run.text, "Hello ");
}

TEST(TextStreamTest, StopStringInsideAPieceWithTextAfterIt) {
  TextStream stream({"STOP"});
  TextStreamStep step = stream.Push("abcSTOPdef");
  EXPECT_EQ(step.text, "abc");
  EXPECT_TRUE(step.stopped);
  EXPECT_EQ(step.stop_index, 0);
  // Nothing after a stop.
  step = stream.Push("more");
  EXPECT_EQ(step.text, "");
  EXPECT_TRUE(step.stopped);
  EXPECT_EQ(stream.Flush(), "");
}

TEST(TextStreamTest, FalseStartIsReleasedWhenItStopsMatching) {
  const StreamResult run = Feed({"xS", "T", "A", "y"}, {"STOP"});
  EXPECT_EQ(run.pieces, (std::vector<std::string>{"x", "", "STA", "y"}));
  EXPECT_FALSE(run.stopped);
  EXPECT_EQ(run.text, "xSTAy");
}

TEST(TextStreamTest, FalseStartHeldToTheEndIsFlushed) {
  TextStream stream({"STOP"});
  EXPECT_EQ(stream.Push("abc ST").text, "abc ");
  EXPECT_EQ(stream.Flush(), "ST");
  EXPECT_FALSE(stream.stopped());
}

TEST(TextStreamTest, OverlappingFalseStartThenMatch) {
  // "aaab" with stop "aab": the first "a" is released only once it cannot start the stop.
  const StreamResult run = Feed({"a", "a", "a", "b", "c"}, {"aab"});
  EXPECT_EQ(run.pieces, (std::vector<std::string>{"", "", "a", "", ""}));
  EXPECT_TRUE(run.stopped);
  EXPECT_EQ(run.text, "a");
}

TEST(TextStreamTest, FirstEndingStopWinsWhateverTheSplit) {
  const std::vector<std::string> stops = {"abcd", "bc", "xbc"};
  // "bc" ends before "abcd" does, in one piece or byte by byte.
  for (const auto& tokens : std::vector<std::vector<std::string>>{
           {"zabcd"}, {"z", "a", "b", "c", "d"}, {"za", "bcd"}}) {
    const StreamResult run = Feed(tokens, stops);
    EXPECT_TRUE(run.stopped);
    EXPECT_EQ(run.stop_index, 1);
    EXPECT_EQ(run.text, "za");
  }
  // Same end: the one that starts first ("xbc") wins.
  const StreamResult run = Feed({"1xbc"}, stops);
  EXPECT_EQ(run.stop_index, 2);
  EXPECT_EQ(run.text, "1");
}

TEST(TextStreamTest, MultibyteStopStringAndSplitChars) {
  // Stop "。" (E3 80 82) arriving byte by byte after a split "é".
  const StreamResult run = Feed({"\xC3", "\xA9", "\xE3", "\x80", "\x82", "after"}, {"。"});
  EXPECT_TRUE(run.stopped);
  EXPECT_EQ(run.text, "é");
}

TEST(TextStreamTest, IncompleteCharRightBeforeAStopBecomesReplacementChar) {
  const StreamResult run = Feed({"ok\xE4\xB8", "</s>"}, {"</s>"});
  EXPECT_TRUE(run.stopped);
  EXPECT_EQ(run.text, "ok" + kFffd);
}

TEST(TextStreamTest, EmptyStopStringsAreIgnored) {
  const StreamResult run = Feed({"abc", "def"}, {"", "zz"});
  EXPECT_FALSE(run.stopped);
  EXPECT_EQ(run.text, "abcdef");
}

TEST(ToValidUtf8Test, ReplacesMaximalSubparts) {
  EXPECT_EQ(ToValidUtf8("plain é 中 😀"), "plain é 中 😀");
  EXPECT_EQ(ToValidUtf8("\xC0\x80"), kFffd + kFffd);                  // overlong
  EXPECT_EQ(ToValidUtf8("\xED\xA0\x80"), kFffd + kFffd + kFffd);      // surrogate
  EXPECT_EQ(ToValidUtf8("\xF4\x90\x80\x80"), kFffd + kFffd + kFffd + kFffd);  // > U+10FFFF
  EXPECT_EQ(ToValidUtf8("\xE4\xB8x"), kFffd + "x");                    // truncated, then ASCII
  EXPECT_EQ(ToValidUtf8("\xF0\x9F\x98"), kFffd);                       // truncated at the end
  EXPECT_EQ(ToValidUtf8("\x80"), kFffd);                               // lone continuation
  EXPECT_EQ(ToValidUtf8(""), "");
}

// Random byte streams cut into random tokens, with stop strings: every piece is valid UTF-8 and
// the whole equals the one-shot answer (text before the first-ending stop, made valid), however
// the bytes are split.
TEST(TextStreamTest, RandomSplitsMatchOneShotDecoding) {
  const std::vector<std::string> alphabet = {"a", "b", "c", "\xC3", "\xA9", "\xE4", "\xB8",
                                             "\xAD", "\xF0", "\x9F", "\x98", "\x80", "\xFF"};
  const std::vector<std::string> stops = {"cab", "\xC3\xA9\xC3", "bb", "\xB8"};
  std::mt19937 rng(2024);
  for (int round = 0; round < 3000; ++round) {
    std::string bytes;
    const int n = std::uniform_int_distribution<int>(0, 24)(rng);
    for (int i = 0; i < n; ++i) {
      bytes += alphabet[std::uniform_int_distribution<size_t>(0, alphabet.size() - 1)(rng)];
    }
    // Use a random subset of the stop strings.
    std::vector<std::string> use;
    for (const std::string& s : stops) {
      use.push_back(std::uniform_int_distribution<int>(0, 1)(rng) ? s : "");
    }
    // One-shot answer: the first end position at which some stop string ends.
    std::string expected = ToValidUtf8(bytes);
    bool expect_stop = false;
    for (size_t end = 1; end <= bytes.size() && !expect_stop; ++end) {
      size_t best_len = 0;
      for (const std::string& s : use) {
        if (!s.empty() && s.size() <= end && bytes.compare(end - s.size(), s.size(), s) == 0) {
          best_len = std::max(best_len, s.size());
        }
      }
      if (best_len > 0) {
        expect_stop = true;
        expected = ToValidUtf8(bytes.substr(0, end - best_len));
      }
    }
    std::vector<std::string> tokens;
    for (size_t i = 0; i < bytes.size();) {
      const size_t len = std::uniform_int_distribution<size_t>(1, 5)(rng);
      tokens.push_back(bytes.substr(i, len));
      i += len;
    }
    const StreamResult run = Feed(tokens, use);
    ASSERT_EQ(run.stopped, expect_stop) << "round " << round;
    ASSERT_EQ(run.text, expected) << "round " << round;
  }
}

}  // namespace
}  // namespace pdserve::sampling
