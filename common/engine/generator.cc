#include "common/engine/generator.h"

#include <algorithm>
#include <chrono>

#include "absl/strings/str_cat.h"
#include "common/sampling/text_stream.h"

namespace pdserve::engine {
namespace {

using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Blocks taken from the pool for one sequence, returned whatever path leaves the scope.
class ScopedBlockTable {
 public:
  explicit ScopedBlockTable(kv::KvBlockPool& pool) : pool_(pool) {}
  ~ScopedBlockTable() { (void)pool_.Free(table_.blocks); }
  kv::BlockTable& table() { return table_; }

 private:
  kv::KvBlockPool& pool_;
  kv::BlockTable table_;
};

}  // namespace

absl::Status ValidateGenerationRequest(const GenerationRequest& request,
                                       const model::ModelConfig& config) {
  if (request.prompt_ids.empty()) return absl::InvalidArgumentError("the prompt is empty");
  if (request.max_new_tokens < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("max tokens must be at least 1, got ", request.max_new_tokens));
  }
  const int64_t n_prompt = static_cast<int64_t>(request.prompt_ids.size());
  if (n_prompt + request.max_new_tokens > config.context_length) {
    return absl::InvalidArgumentError(absl::StrCat(
        "prompt of ", n_prompt, " tokens + max tokens ", request.max_new_tokens, " = ",
        n_prompt + request.max_new_tokens, " exceeds the model's context length of ",
        config.context_length, " tokens"));
  }
  for (int32_t id : request.prompt_ids) {
    if (id < 0 || id >= config.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat("prompt token id ", id,
                                                     " is outside the vocabulary [0, ",
                                                     config.vocab_size, ")"));
    }
  }
  for (const std::string& stop : request.stop_strings) {
    if (stop.empty()) return absl::InvalidArgumentError("a stop string is empty");
  }
  return sampling::ValidateSamplingParams(request.sampling);
}

absl::StatusOr<GenerationResult> Generate(Engine& engine, const GenerationRequest& request,
                                          const TextSink& on_text) {
  const model::ModelConfig& config = engine.config();
  if (absl::Status s = ValidateGenerationRequest(request, config); !s.ok()) return s;

  const int64_t max_positions =
      static_cast<int64_t>(request.prompt_ids.size()) + request.max_new_tokens;
  const int block_size = engine.kv_pool().layout().block_size;
  ScopedBlockTable scoped(engine.kv_pool());
  kv::BlockTable& table = scoped.table();
  // Blocks for the prompt and every token it may generate are reserved up front, so a request
  // that starts never runs out of KV memory half-way.
  absl::StatusOr<std::vector<kv::BlockId>> blocks =
      engine.kv_pool().Allocate((max_positions + block_size - 1) / block_size);
  if (!blocks.ok()) return blocks.status();
  table.blocks = *std::move(blocks);

  const std::vector<int32_t>& end_ids = engine.tokenizer().end_of_generation_ids();
  std::vector<int32_t> tokens = request.prompt_ids;  // prompt, then generated tokens
  GenerationResult result;
  sampling::TextStream text_stream(request.stop_strings);
  const Clock::time_point start = Clock::now();

  // The tokens whose K/V the next forward call must compute: the whole prompt at first; then
  // the last chosen token, or everything again without the KV cache.
  int64_t first_uncached = 0;
  while (true) {
    const int64_t n_tokens = static_cast<int64_t>(tokens.size());
    if (!request.use_kv_cache) first_uncached = 0;
    std::vector<BatchToken> batch;
    for (int64_t p = first_uncached; p < n_tokens; ++p) {
      batch.push_back(BatchToken{tokens[p], p, &table, p == n_tokens - 1});
    }
    absl::StatusOr<std::vector<float>> logits = engine.forward().Forward(batch);
    if (!logits.ok()) return logits.status();
    table.n_tokens = n_tokens;
    first_uncached = n_tokens;

    const int32_t next = sampling::SampleToken(*logits, request.sampling, n_tokens, tokens);
    if (result.output_ids.empty()) result.ttft_seconds = SecondsSince(start);

    const bool is_end = std::find(end_ids.begin(), end_ids.end(), next) != end_ids.end();
    if (is_end && !request.ignore_eos) {
      result.finish = request::FinishReason::kEos;
      break;
    }
    const int32_t previous = tokens.back();
    tokens.push_back(next);
    result.output_ids.push_back(next);
    const sampling::TextStreamStep piece =
        text_stream.Push(engine.tokenizer().TokenText(next, previous));
    if (!piece.text.empty()) {
      result.text += piece.text;
      if (on_text) on_text(piece.text);
    }
    if (piece.stopped) {
      result.finish = request::FinishReason::kStop;
      break;
    }
    if (static_cast<int64_t>(result.output_ids.size()) >= request.max_new_tokens) {
      result.finish = request::FinishReason::kLength;
      break;
    }
  }
  if (result.finish != request::FinishReason::kStop) {
    const std::string rest = text_stream.Flush();
    if (!rest.empty()) {
      result.text += rest;
      if (on_text) on_text(rest);
    }
  }
  result.total_seconds = SecondsSince(start);
  const size_t n_out = result.output_ids.size();
  if (n_out > 1) result.tpot_seconds = (result.total_seconds - result.ttft_seconds) / (n_out - 1);
  return result;
}

}  // namespace pdserve::engine
