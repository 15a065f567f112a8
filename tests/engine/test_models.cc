#include "tests/engine/test_models.h"

#include "gtest/gtest.h"

namespace pdserve::engine::testing {

EngineOptions TinyModelOptions(TinyModelFormat format) {
  EngineOptions options;
  if (format == TinyModelFormat::kLlama2cBin) {
    options.model_path = SharedPath("models/stories260K.bin");
    options.tokenizer_path = SharedPath("models/tok512.bin");
  } else {
    options.model_path = SharedPath("models/stories260K.gguf");
  }
  return options;
}

EngineOptions SmolLm2Options() {
  EngineOptions options;
  options.model_path = SmolLm2Path();
  options.kv_pool_tokens = 4096;
  return options;
}

std::unique_ptr<Engine> LoadEngineOrDie(const EngineOptions& options) {
  absl::StatusOr<std::unique_ptr<Engine>> engine = Engine::Load(options);
  if (!engine.ok()) {
    ADD_FAILURE() << "loading " << options.model_path << ": " << engine.status();
    std::abort();
  }
  return *std::move(engine);
}

}  // namespace pdserve::engine::testing
