#include "tests/common/tokenizer/test_util.h"

#include <cstdlib>
#include <fstream>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace pdserve::tokenizer::testing {

std::string SharedPath(const std::string& relative) {
  const char* env = std::getenv("PDSERVE_SHARED_DIR");
  return std::string(env != nullptr ? env : PDSERVE_SHARED_DIR) + "/" + relative;
}

std::string SmolLm2Path() {
  if (const char* dir = std::getenv("PDSERVE_MODELS_DIR")) {
    return std::string(dir) + "/SmolLM2-135M-Instruct.Q4_1.gguf";
  }
  const char* root = std::getenv("PDSERVE_ROOT");
  return std::string(root != nullptr ? root : PDSERVE_ROOT) +
         "/models/SmolLM2-135M-Instruct.Q4_1.gguf";
}

std::vector<GoldenCase> ReadGoldens() {
  const std::string path = SharedPath("golden/stories260K_greedy.jsonl");
  std::ifstream in(path);
  std::vector<GoldenCase> cases;
  if (!in) {
    ADD_FAILURE() << "cannot open " << path;
    return cases;
  }
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    const nlohmann::json json = nlohmann::json::parse(line);
    cases.push_back(GoldenCase{json.at("prompt").get<std::string>(),
                               json.at("prompt_ids").get<std::vector<int32_t>>(),
                               json.at("output_ids").get<std::vector<int32_t>>(),
                               json.at("continuation").get<std::string>()});
  }
  return cases;
}

std::string Decode(const Tokenizer& tokenizer, const std::vector<int32_t>& ids,
                   int32_t previous_token) {
  std::string text;
  for (int32_t id : ids) {
    text += tokenizer.TokenText(id, previous_token);
    previous_token = id;
  }
  return text;
}

}  // namespace pdserve::tokenizer::testing
