#pragma once
// Paths of the models the engine tests run, and the golden references. Missing files fail the
// test with a message naming them (../shared must sit beside the checkout, as in CI).

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/engine/engine.h"

namespace pdserve::engine::testing {

std::string SharedPath(const std::string& relative);  // under ../shared
std::string SmolLm2Path();                            // models/ (deploy/fetch-model.sh)

struct GoldenCase {
  std::string prompt;
  std::vector<int32_t> prompt_ids;
  int64_t max_new_tokens = 0;
  std::vector<int32_t> output_ids;
  std::string finish;  // "length" | "bos"
  std::string continuation;
};
std::vector<GoldenCase> LoadGoldenCases();

enum class TinyModelFormat { kLlama2cBin, kGguf };
EngineOptions TinyModelOptions(TinyModelFormat format);
EngineOptions SmolLm2Options();

// Loads or fails the current test (ASSERT-style: call through ASSERT_NO_FATAL_FAILURE).
std::unique_ptr<Engine> LoadEngineOrDie(const EngineOptions& options);

}  // namespace pdserve::engine::testing
