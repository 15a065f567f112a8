#include "tests/engine/golden_cases.h"

#include <cstdlib>
#include <fstream>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace pdserve::engine::testing {
namespace {

void RequireFile(const std::string& path) {
  std::ifstream f(path);
  if (!f) {
    ADD_FAILURE() << "missing test input " << path
                  << " (../shared must sit beside the checkout; SmolLM2 comes from "
                     "deploy/fetch-model.sh)";
    std::abort();
  }
}

std::string SmolLm2File() {
  const char* env = std::getenv("PDSERVE_MODELS_DIR");
  const std::string dir = env != nullptr ? env : std::string(PDSERVE_ROOT) + "/models";
  return dir + "/SmolLM2-135M-Instruct.Q4_1.gguf";
}

}  // namespace

std::string SharedPath(const std::string& relative) {
  const char* env = std::getenv("PDSERVE_SHARED_DIR");
  const std::string path = std::string(env != nullptr ? env : PDSERVE_SHARED_DIR) + "/" + relative;
  RequireFile(path);
  return path;
}

std::string SmolLm2Path() {
  const std::string path = SmolLm2File();
  RequireFile(path);
  return path;
}

bool SmolLm2Available() { return std::ifstream(SmolLm2File()).good(); }

std::vector<GoldenCase> LoadGoldenCases() {
  std::ifstream in(SharedPath("golden/stories260K_greedy.jsonl"));
  std::vector<GoldenCase> cases;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    const nlohmann::json j = nlohmann::json::parse(line);
    GoldenCase c;
    c.prompt = j.at("prompt").get<std::string>();
    c.prompt_ids = j.at("prompt_ids").get<std::vector<int32_t>>();
    c.max_new_tokens = j.at("max_new_tokens").get<int64_t>();
    c.output_ids = j.at("output_ids").get<std::vector<int32_t>>();
    c.finish = j.at("finish").get<std::string>();
    c.continuation = j.at("continuation").get<std::string>();
    cases.push_back(std::move(c));
  }
  EXPECT_FALSE(cases.empty()) << "no golden cases read";
  return cases;
}

}  // namespace pdserve::engine::testing
