#pragma once
// Flags shared by every tool that loads a model (model, tokenizer, threads, kernels, KV cache)
// and that turns a prompt into token ids (plain or chat form).

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "cli/arg_parser.h"
#include "common/engine/engine.h"

namespace pdserve::cli {

void AddEngineFlags(ArgParser& parser);
absl::StatusOr<engine::EngineOptions> EngineOptionsFromFlags(const ArgParser& parser);

// --prompt TEXT with --chat (render it as the user's message in the model's chat template, with
// --system as the system message) or without (plain text).
void AddPromptFlags(ArgParser& parser);
absl::StatusOr<std::vector<int32_t>> PromptIdsFromFlags(const ArgParser& parser,
                                                        const engine::Engine& engine);

}  // namespace pdserve::cli
