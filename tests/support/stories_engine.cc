#include "tests/support/stories_engine.h"

#include <utility>

#include "gtest/gtest.h"

namespace pdserve::test_support {

std::string StoriesGgufPath() {
  return std::string(PDSERVE_SHARED_DIR) + "/models/stories260K.gguf";
}

std::unique_ptr<engine::Engine> LoadStoriesEngine(int64_t kv_pool_tokens) {
  engine::EngineOptions options;
  options.model_path = StoriesGgufPath();
  options.kv_pool_tokens = kv_pool_tokens;
  absl::StatusOr<std::unique_ptr<engine::Engine>> engine = engine::Engine::Load(options);
  EXPECT_TRUE(engine.ok()) << engine.status();
  return engine.ok() ? *std::move(engine) : nullptr;
}

}  // namespace pdserve::test_support
