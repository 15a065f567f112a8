#pragma once
// Choosing the next token from logits: greedy, temperature, top-k, top-p, repetition penalty.
// The random number for a step is a function of (seed, position) alone, so the same seed gives
// the same text wherever (on whichever worker, in whichever batch) the request runs.

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"

namespace pdserve::sampling {

struct SamplingParams {
  float temperature = 0.0f;         // 0: greedy; must be >= 0 and finite
  int top_k = 0;                    // 0: off; must be >= 0
  float top_p = 1.0f;               // in (0, 1]
  float repetition_penalty = 1.0f;  // > 0; 1: off
  uint64_t seed = 0;
};

// InvalidArgument naming the offending field and its allowed range.
absl::Status ValidateSamplingParams(const SamplingParams& params);

// Picks a token. `position` is the index of the token being chosen in the sequence (prompt
// length for the first generated token); `previous_tokens` are the ones the repetition penalty
// applies to (llama.cpp/HF convention: positive logits divided by it, negative multiplied).
// Greedy ties go to the lowest id. `logits` is not modified.
int32_t SampleToken(absl::Span<const float> logits, const SamplingParams& params, int64_t position,
                    absl::Span<const int32_t> previous_tokens);

// The uniform [0, 1) number used at `position` for `seed`.
double UniformForPosition(uint64_t seed, int64_t position);

}  // namespace pdserve::sampling
