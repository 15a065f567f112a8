#pragma once
// The one entry point for model files: sniffs the format and dispatches to the GGUF `llama`
// loader or the llama2.c loader.

#include <string>

#include "absl/status/statusor.h"
#include "common/model/model_format.h"
#include "common/model/model_weights.h"

namespace pdserve::model {

// Loads a GGUF (`llama` architecture) or llama2.c version-0 checkpoint.
absl::StatusOr<ModelWeights> LoadModel(const std::string& path);

}  // namespace pdserve::model
