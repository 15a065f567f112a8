#pragma once
// stories260K (../shared/models) loaded as the worker tests need it: the tiny real model every
// prefill and decode test runs.

#include <cstdint>
#include <memory>
#include <string>

#include "common/engine/engine.h"

namespace pdserve::test_support {

std::string StoriesGgufPath();  // stories260K.gguf in ../shared/models

// Loads stories260K with the engine's defaults (CPU, one thread, 16-token KV blocks) and a pool
// of `kv_pool_tokens` (0: one context). A load error fails the calling test and returns null.
std::unique_ptr<engine::Engine> LoadStoriesEngine(int64_t kv_pool_tokens);

}  // namespace pdserve::test_support
