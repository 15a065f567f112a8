#include "cli/generation_flags.h"

#include "absl/strings/str_cat.h"

namespace pdserve::cli {
namespace {

// Reads `name` into *out when given; InvalidArgument when not a number or (for int32 fields)
// out of range.
absl::Status ReadInt(const ArgParser& parser, const std::string& name, bool fits_int32,
                     std::optional<int64_t>* out) {
  if (!parser.Has(name)) return absl::OkStatus();
  absl::StatusOr<int64_t> value = parser.GetInt(name, 0);
  if (!value.ok()) return value.status();
  if (fits_int32 && (*value < -(int64_t{1} << 31) || *value >= (int64_t{1} << 31))) {
    return absl::InvalidArgumentError(absl::StrCat("--", name, " is out of range: ", *value));
  }
  *out = *value;
  return absl::OkStatus();
}

absl::Status ReadDouble(const ArgParser& parser, const std::string& name,
                        std::optional<double>* out) {
  if (!parser.Has(name)) return absl::OkStatus();
  absl::StatusOr<double> value = parser.GetDouble(name, 0);
  if (!value.ok()) return value.status();
  *out = *value;
  return absl::OkStatus();
}

}  // namespace

void AddGenerationFlags(ArgParser& parser) {
  parser.AddString("max-tokens", absl::StrCat("most tokens to generate, >= 1 (default ",
                                              kDefaultMaxTokens, ")"));
  parser.AddBool("ignore-eos", "generate exactly --max-tokens, past end tokens (benchmarks)");
  parser.AddString("temperature", "0 = greedy (default 0)");
  parser.AddString("top-k", "keep the k most likely tokens; 0 = off (default 0)");
  parser.AddString("top-p", "nucleus sampling threshold in (0, 1] (default 1)");
  parser.AddString("repetition-penalty", "> 0; 1 = off (default 1)");
  parser.AddString("seed", "random seed (default 0)");
  parser.AddString("stop", "stop when this text is generated", /*repeatable=*/true);
}

absl::StatusOr<GenerationFlags> GenerationFlagsFrom(const ArgParser& parser) {
  GenerationFlags flags;
  for (const absl::Status& s : {
           ReadInt(parser, "max-tokens", /*fits_int32=*/true, &flags.max_tokens),
           ReadDouble(parser, "temperature", &flags.temperature),
           ReadInt(parser, "top-k", /*fits_int32=*/true, &flags.top_k),
           ReadDouble(parser, "top-p", &flags.top_p),
           ReadDouble(parser, "repetition-penalty", &flags.repetition_penalty),
           ReadInt(parser, "seed", /*fits_int32=*/false, &flags.seed),
       }) {
    if (!s.ok()) return s;
  }
  flags.stop = parser.GetAll("stop");
  flags.ignore_eos = parser.GetBool("ignore-eos");
  return flags;
}

sampling::SamplingParams SamplingParamsFrom(const GenerationFlags& flags) {
  sampling::SamplingParams params;
  if (flags.temperature) params.temperature = static_cast<float>(*flags.temperature);
  if (flags.top_k) params.top_k = static_cast<int>(*flags.top_k);
  if (flags.top_p) params.top_p = static_cast<float>(*flags.top_p);
  if (flags.repetition_penalty) {
    params.repetition_penalty = static_cast<float>(*flags.repetition_penalty);
  }
  if (flags.seed) params.seed = static_cast<uint64_t>(*flags.seed);
  return params;
}

}  // namespace pdserve::cli
