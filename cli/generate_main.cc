// pdserve-generate: runs a model in this process and streams the generated text to stdout (only
// that: no prompt, no banners); TTFT, TPOT and tokens/s go to stderr.

#include <cstdio>
#include <iostream>

#include "absl/strings/str_format.h"
#include "cli/arg_parser.h"
#include "cli/engine_flags.h"
#include "cli/generation_flags.h"
#include "common/engine/engine.h"
#include "common/engine/generator.h"

namespace pdserve::cli {
namespace {

absl::StatusOr<engine::GenerationRequest> RequestFromFlags(const ArgParser& parser,
                                                           const engine::Engine& engine) {
  engine::GenerationRequest request;
  absl::StatusOr<std::vector<int32_t>> ids = PromptIdsFromFlags(parser, engine);
  if (!ids.ok()) return ids.status();
  request.prompt_ids = *std::move(ids);
  absl::StatusOr<GenerationFlags> flags = GenerationFlagsFrom(parser);
  if (!flags.ok()) return flags.status();
  request.max_new_tokens = flags->max_tokens.value_or(kDefaultMaxTokens);
  request.sampling = SamplingParamsFrom(*flags);
  request.stop_strings = flags->stop;
  request.ignore_eos = flags->ignore_eos;
  request.use_kv_cache = !parser.GetBool("no-kv-cache");
  if (absl::Status s = engine::ValidateGenerationRequest(request, engine.config()); !s.ok()) {
    return s;
  }
  return request;
}

int Run(int argc, char** argv) {
  ArgParser parser;
  AddEngineFlags(parser);
  AddPromptFlags(parser);
  AddGenerationFlags(parser);
  parser.AddBool("no-kv-cache", "recompute the whole prefix at every step");
  parser.AddBool("help", "show this help");
  if (absl::Status s = parser.Parse(argc, argv); !s.ok()) {
    std::cerr << "pdserve-generate: " << s.message() << "\n" << parser.Usage("pdserve-generate");
    return 2;
  }
  if (parser.GetBool("help")) {
    std::cout << parser.Usage("pdserve-generate");
    return 0;
  }
  absl::StatusOr<engine::EngineOptions> options = EngineOptionsFromFlags(parser);
  if (!options.ok()) {
    std::cerr << "pdserve-generate: " << options.status().message() << "\n";
    return 2;
  }
  absl::StatusOr<std::unique_ptr<engine::Engine>> engine = engine::Engine::Load(*options);
  if (!engine.ok()) {
    std::cerr << "pdserve-generate: " << engine.status().message() << "\n";
    return 1;
  }
  absl::StatusOr<engine::GenerationRequest> request = RequestFromFlags(parser, **engine);
  if (!request.ok()) {
    std::cerr << "pdserve-generate: " << request.status().message() << "\n";
    return 2;
  }
  std::cerr << (*engine)->DeviceReport() << "\n" << (*engine)->KvMemoryReport() << "\n";
  absl::StatusOr<engine::GenerationResult> result =
      engine::Generate(**engine, *request, [](absl::string_view text) {
        std::fwrite(text.data(), 1, text.size(), stdout);
        std::fflush(stdout);
      });
  if (!result.ok()) {
    std::cerr << "\npdserve-generate: " << result.status().message() << "\n";
    return 1;
  }
  const size_t n_out = result->output_ids.size();
  std::cerr << absl::StrFormat(
      "\nprompt %d tokens, generated %d tokens (finish: %s); TTFT %.2f ms, TPOT %.2f ms, "
      "%.1f tokens/s\n",
      request->prompt_ids.size(), n_out, request::FinishReasonName(result->finish),
      result->ttft_seconds * 1e3, result->tpot_seconds * 1e3,
      result->total_seconds > 0 ? n_out / result->total_seconds : 0.0);
  return 0;
}

}  // namespace
}  // namespace pdserve::cli

int main(int argc, char** argv) { return pdserve::cli::Run(argc, argv); }
