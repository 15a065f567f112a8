#include "cli/arg_parser.h"

#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "tests/cli/parse_args.h"

namespace pdserve::cli {
namespace {

// Parses `args` (without the program name) with the flags every case here declares.
absl::Status ParseWithTestFlags(ArgParser& parser, std::vector<std::string> args) {
  parser.AddString("model", "model file");
  parser.AddString("stop", "stop text", /*repeatable=*/true);
  parser.AddString("threads", "threads");
  parser.AddString("temperature", "temperature");
  parser.AddBool("chat", "chat form");
  return ParseArgs(parser, std::move(args));
}

TEST(ArgParserTest, TakesSpacedAndInlineValuesBoolsAndRepeats) {
  ArgParser parser;
  ASSERT_TRUE(ParseWithTestFlags(
                  parser, {"--model", "m.gguf", "--threads=4", "--chat", "--stop", "a", "--stop=b"})
                  .ok());
  EXPECT_EQ(parser.GetString("model"), "m.gguf");
  EXPECT_EQ(*parser.GetInt("threads", 1), 4);
  EXPECT_TRUE(parser.GetBool("chat"));
  EXPECT_EQ(parser.GetAll("stop"), (std::vector<std::string>{"a", "b"}));
  EXPECT_FALSE(parser.Has("temperature"));
  EXPECT_EQ(*parser.GetDouble("temperature", 0.7), 0.7);
  EXPECT_EQ(parser.GetString("temperature", "none"), "none");
}

TEST(ArgParserTest, ExplicitBoolValues) {
  ArgParser parser;
  ASSERT_TRUE(ParseWithTestFlags(parser, {"--chat=false"}).ok());
  EXPECT_TRUE(parser.Has("chat"));
  EXPECT_FALSE(parser.GetBool("chat"));
}

TEST(ArgParserTest, EveryMistakeIsAMessageNamingIt) {
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"--nope", "1"}, "unknown flag --nope"},
      {{"model.gguf"}, "unexpected argument 'model.gguf'"},
      {{"--"}, "unexpected argument '--'"},
      {{"--model"}, "--model needs a value"},
      {{"--model", "a", "--model", "b"}, "--model given more than once"},
      {{"--chat=yes"}, "--chat takes no value"},
  };
  for (const auto& [args, message] : cases) {
    ArgParser parser;
    const absl::Status status = ParseWithTestFlags(parser, args);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << message;
    EXPECT_NE(status.message().find(message), std::string::npos) << status;
  }
}

TEST(ArgParserTest, NumbersAreCheckedWhenRead) {
  ArgParser parser;
  ASSERT_TRUE(ParseWithTestFlags(parser, {"--threads", "four", "--temperature", "0.5x"}).ok());
  absl::StatusOr<int64_t> threads = parser.GetInt("threads", 1);
  EXPECT_EQ(threads.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(threads.status().message().find("--threads must be an integer, got 'four'"),
            std::string::npos);
  EXPECT_EQ(parser.GetDouble("temperature", 1).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(ArgParserTest, UsageListsEveryFlagWithItsHelp) {
  ArgParser parser;
  ASSERT_TRUE(ParseWithTestFlags(parser, {}).ok());
  const std::string usage = parser.Usage("prog");
  EXPECT_EQ(usage.rfind("usage: prog [flags]\n", 0), 0u);
  EXPECT_NE(usage.find("--model VALUE\n      model file"), std::string::npos) << usage;
  EXPECT_NE(usage.find("--chat\n      chat form"), std::string::npos) << usage;
  EXPECT_NE(usage.find("stop text (repeatable)"), std::string::npos) << usage;
}

}  // namespace
}  // namespace pdserve::cli
