#pragma once
// Helpers for the tokenizer tests: paths of the shared models and the goldens.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/gguf/gguf_file.h"
#include "common/tokenizer/tokenizer.h"

namespace pdserve::tokenizer::testing {

std::string SharedPath(const std::string& relative);  // under ../shared
std::string SmolLm2Path();                             // models/SmolLM2-135M-Instruct.Q4_1.gguf

struct GoldenCase {
  std::string prompt;
  std::vector<int32_t> prompt_ids;
  std::vector<int32_t> output_ids;
  std::string continuation;
};
// golden/stories260K_greedy.jsonl; fails the test (ADD_FAILURE) when unreadable.
std::vector<GoldenCase> ReadGoldens();

// The concatenated TokenText of `ids`, each after the one before (-1 before the first).
std::string Decode(const Tokenizer& tokenizer, const std::vector<int32_t>& ids,
                   int32_t previous_token = -1);

}  // namespace pdserve::tokenizer::testing
