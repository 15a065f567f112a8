#pragma once
// Engine options for the models the engine tests run (paths and goldens: golden_cases.h).

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/engine/engine.h"
#include "tests/engine/golden_cases.h"

namespace pdserve::engine::testing {

enum class TinyModelFormat { kLlama2cBin, kGguf };
EngineOptions TinyModelOptions(TinyModelFormat format);
EngineOptions SmolLm2Options();

// Loads or fails the current test (ASSERT-style: call through ASSERT_NO_FATAL_FAILURE).
std::unique_ptr<Engine> LoadEngineOrDie(const EngineOptions& options);

}  // namespace pdserve::engine::testing
