#pragma once
// The flags of one generation request, shared by pdserve-generate (runs it in-process) and
// pdserve-client (sends it to a router): token budget, sampling, stop strings. Parsing turns a
// malformed number into an error naming its flag; ranges are checked by whoever runs the request
// (engine::ValidateGenerationRequest, or the router, which answers INVALID_ARGUMENT).

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "cli/arg_parser.h"
#include "common/sampling/sampler.h"

namespace pdserve::cli {

inline constexpr int64_t kDefaultMaxTokens = 256;

// A field is empty when its flag was not given, so that a client can leave it to the router.
struct GenerationFlags {
  std::optional<int64_t> max_tokens;  // fits int32
  std::optional<double> temperature;
  std::optional<int64_t> top_k;  // fits int32
  std::optional<double> top_p;
  std::optional<double> repetition_penalty;
  std::optional<int64_t> seed;
  std::vector<std::string> stop;
  bool ignore_eos = false;
};

// Declares --max-tokens, --ignore-eos, --temperature, --top-k, --top-p, --repetition-penalty,
// --seed and the repeatable --stop.
void AddGenerationFlags(ArgParser& parser);
// InvalidArgument naming the flag for a value that is not a number, or an integer that does not
// fit the request's 32-bit field.
absl::StatusOr<GenerationFlags> GenerationFlagsFrom(const ArgParser& parser);

// SamplingParams' defaults, overridden by the flags given.
sampling::SamplingParams SamplingParamsFrom(const GenerationFlags& flags);

}  // namespace pdserve::cli
