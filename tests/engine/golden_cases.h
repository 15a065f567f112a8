#pragma once
// Paths of the shared test models and the golden references (no engine needed: the GPU tests
// use these too). Missing files fail the test with a message naming them (../shared must sit
// beside the checkout, as in CI, or PDSERVE_SHARED_DIR name it).

#include <cstdint>
#include <string>
#include <vector>

namespace pdserve::engine::testing {

std::string SharedPath(const std::string& relative);  // under ../shared
std::string SmolLm2Path();                            // models/ (deploy/fetch-model.sh)
// Whether SmolLm2Path() would find the file (the GPU bundle has no room for it).
bool SmolLm2Available();

struct GoldenCase {
  std::string prompt;
  std::vector<int32_t> prompt_ids;
  int64_t max_new_tokens = 0;
  std::vector<int32_t> output_ids;
  std::string finish;  // "length" | "bos"
  std::string continuation;
};
std::vector<GoldenCase> LoadGoldenCases();

}  // namespace pdserve::engine::testing
