#include "cli/generation_flags.h"

#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "tests/cli/parse_args.h"

namespace pdserve::cli {
namespace {

absl::StatusOr<GenerationFlags> FlagsFrom(std::vector<std::string> args) {
  ArgParser parser;
  AddGenerationFlags(parser);
  if (absl::Status s = ParseArgs(parser, std::move(args)); !s.ok()) return s;
  return GenerationFlagsFrom(parser);
}

TEST(GenerationFlagsTest, AbsentFlagsStayEmptyAndLeaveTheDefaults) {
  absl::StatusOr<GenerationFlags> flags = FlagsFrom({});
  ASSERT_TRUE(flags.ok()) << flags.status();
  EXPECT_FALSE(flags->max_tokens.has_value());
  EXPECT_FALSE(flags->temperature.has_value());
  EXPECT_FALSE(flags->top_k.has_value());
  EXPECT_FALSE(flags->seed.has_value());
  EXPECT_TRUE(flags->stop.empty());
  EXPECT_FALSE(flags->ignore_eos);
  const sampling::SamplingParams params = SamplingParamsFrom(*flags);
  const sampling::SamplingParams defaults;
  EXPECT_EQ(params.temperature, defaults.temperature);
  EXPECT_EQ(params.top_k, defaults.top_k);
  EXPECT_EQ(params.top_p, defaults.top_p);
  EXPECT_EQ(params.repetition_penalty, defaults.repetition_penalty);
  EXPECT_EQ(params.seed, defaults.seed);
}

TEST(GenerationFlagsTest, GivenFlagsOverrideEveryField) {
  absl::StatusOr<GenerationFlags> flags =
      FlagsFrom({"--max-tokens", "40", "--temperature", "0.9", "--top-k", "40", "--top-p",
                 "0.95", "--repetition-penalty", "1.1", "--seed", "4242", "--stop", "The end",
                 "--stop", "\n\n", "--ignore-eos"});
  ASSERT_TRUE(flags.ok()) << flags.status();
  EXPECT_EQ(flags->max_tokens, 40);
  EXPECT_EQ(flags->stop, (std::vector<std::string>{"The end", "\n\n"}));
  EXPECT_TRUE(flags->ignore_eos);
  const sampling::SamplingParams params = SamplingParamsFrom(*flags);
  EXPECT_FLOAT_EQ(params.temperature, 0.9f);
  EXPECT_EQ(params.top_k, 40);
  EXPECT_FLOAT_EQ(params.top_p, 0.95f);
  EXPECT_FLOAT_EQ(params.repetition_penalty, 1.1f);
  EXPECT_EQ(params.seed, 4242u);
}

TEST(GenerationFlagsTest, ValuesOutOfRangeAreLeftToWhoeverRunsTheRequest) {
  // Parsing only reads numbers: a negative top-k is the engine's or the router's to refuse, with
  // its own message.
  absl::StatusOr<GenerationFlags> flags = FlagsFrom({"--top-k", "-1", "--max-tokens", "0"});
  ASSERT_TRUE(flags.ok()) << flags.status();
  EXPECT_EQ(flags->top_k, -1);
  EXPECT_EQ(flags->max_tokens, 0);
}

TEST(GenerationFlagsTest, MalformedOrOversizedNumbersNameTheirFlag) {
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"--max-tokens", "ten"}, "--max-tokens must be an integer"},
      {{"--temperature", "warm"}, "--temperature must be a number"},
      {{"--top-k", "2147483648"}, "--top-k is out of range"},
      {{"--max-tokens", "-2147483649"}, "--max-tokens is out of range"},
      {{"--seed", "1.5"}, "--seed must be an integer"},
  };
  for (const auto& [args, message] : cases) {
    absl::StatusOr<GenerationFlags> flags = FlagsFrom(args);
    EXPECT_EQ(flags.status().code(), absl::StatusCode::kInvalidArgument) << message;
    EXPECT_NE(flags.status().message().find(message), std::string::npos) << flags.status();
  }
  // A seed is 64-bit: no int32 bound.
  absl::StatusOr<GenerationFlags> seed = FlagsFrom({"--seed", "8589934592"});
  ASSERT_TRUE(seed.ok()) << seed.status();
  EXPECT_EQ(seed->seed, int64_t{8589934592});
}

}  // namespace
}  // namespace pdserve::cli
