// Greedy output equals the independent references in ../shared/golden, token for token and
// prompt encoding included, from the llama2.c checkpoint and the GGUF file, with the SIMD and the
// scalar kernels.

#include <string>
#include <tuple>

#include "common/engine/generator.h"
#include "gtest/gtest.h"
#include "tests/engine/test_models.h"

namespace pdserve::engine {
namespace {

using testing::GoldenCase;
using testing::TinyModelFormat;

class GoldenTest : public ::testing::TestWithParam<std::tuple<TinyModelFormat, std::string>> {};

TEST_P(GoldenTest, GreedyOutputMatchesReference) {
  const auto [format, kernels_name] = GetParam();
  EngineOptions options = testing::TinyModelOptions(format);
  absl::StatusOr<kernels::Isa> isa = kernels::ParseIsa(kernels_name);
  ASSERT_TRUE(isa.ok()) << isa.status();
  options.isa = *isa;
  std::unique_ptr<Engine> engine = testing::LoadEngineOrDie(options);

  for (const GoldenCase& golden : testing::LoadGoldenCases()) {
    SCOPED_TRACE("prompt: " + golden.prompt);
    absl::StatusOr<std::vector<int32_t>> ids = engine->tokenizer().Encode(golden.prompt, {});
    ASSERT_TRUE(ids.ok()) << ids.status();
    EXPECT_EQ(*ids, golden.prompt_ids);

    GenerationRequest request;
    request.prompt_ids = golden.prompt_ids;
    request.max_new_tokens = golden.max_new_tokens;
    std::string streamed;
    absl::StatusOr<GenerationResult> result =
        Generate(*engine, request, [&](absl::string_view text) { streamed.append(text.data(), text.size()); });
    ASSERT_TRUE(result.ok()) << result.status();
    EXPECT_EQ(result->output_ids, golden.output_ids);
    EXPECT_EQ(result->finish, golden.finish == "bos" ? request::FinishReason::kEos
                                                     : request::FinishReason::kLength);
    EXPECT_EQ(result->text, golden.continuation);
    EXPECT_EQ(streamed, golden.continuation);
  }
  EXPECT_EQ(engine->kv_pool().n_free(), engine->kv_pool().n_total());
}

INSTANTIATE_TEST_SUITE_P(
    AllModelsAndKernels, GoldenTest,
    ::testing::Combine(::testing::Values(TinyModelFormat::kLlama2cBin, TinyModelFormat::kGguf),
                       ::testing::Values("auto", "scalar")),
    [](const auto& info) {
      return std::string(std::get<0>(info.param) == TinyModelFormat::kGguf ? "gguf" : "bin") +
             "_" + std::get<1>(info.param);
    });

}  // namespace
}  // namespace pdserve::engine
