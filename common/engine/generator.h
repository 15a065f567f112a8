#pragma once
// Generation of one sequence, start to end, on an Engine: prefill the prompt, then decode one
// token per step until max tokens, a stop string or an end-of-generation token. What the
// single-process CLI runs; workers run the same ForwardPass with continuous batching instead.

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/engine/engine.h"
#include "common/request/request_contract.h"
#include "common/sampling/sampler.h"

namespace pdserve::engine {

struct GenerationRequest {
  std::vector<int32_t> prompt_ids;  // non-empty
  int64_t max_new_tokens = 16;      // >= 1; prompt + max_new_tokens <= context length
  sampling::SamplingParams sampling;
  std::vector<std::string> stop_strings;
  bool ignore_eos = false;     // keep going past end-of-generation tokens (benchmarks)
  bool use_kv_cache = true;    // false: recompute the whole prefix at every step
};

struct GenerationResult {
  std::vector<int32_t> output_ids;  // generated tokens, without a terminating end token
  std::string text;                 // the text emitted, without a stop string
  // kStop: the stop string is not part of the text; kEos: the end token is not in output_ids.
  request::FinishReason finish = request::FinishReason::kLength;
  double ttft_seconds = 0;          // start of prefill to the first token chosen
  double tpot_seconds = 0;          // mean time per output token after the first
  double total_seconds = 0;
};

// Receives text as soon as it is safe to emit: whole UTF-8 characters, never a prefix of a stop
// string that may still complete.
using TextSink = std::function<void(absl::string_view text)>;

// InvalidArgument naming what is wrong: empty prompt, max_new_tokens < 1, prompt + max tokens
// above the context (naming both), bad sampling values, ids outside the vocabulary.
absl::Status ValidateGenerationRequest(const GenerationRequest& request,
                                       const model::ModelConfig& config);

// Runs the request on the engine. The KV blocks it takes are returned to the pool whatever
// happens; a full pool is ResourceExhausted.
absl::StatusOr<GenerationResult> Generate(Engine& engine, const GenerationRequest& request,
                                          const TextSink& on_text);

}  // namespace pdserve::engine
