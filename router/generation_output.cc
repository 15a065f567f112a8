#include "router/generation_output.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"

namespace pdserve::router {

GenerationOutput::GenerationOutput(const tokenizer::Tokenizer& tokenizer,
                                   const std::vector<int32_t>& prompt_ids, int32_t max_tokens,
                                   bool ignore_eos, std::vector<std::string> stop)
    : tokenizer_(tokenizer),
      max_tokens_(max_tokens),
      ignore_eos_(ignore_eos),
      text_(std::move(stop)),
      previous_token_(prompt_ids.back()) {}

void GenerationOutput::AppendChunk(std::string text, std::vector<v1::GenerateResponse>& out) {
  v1::GenerateResponse& response = out.emplace_back();
  v1::TextChunk* chunk = response.mutable_chunk();
  chunk->set_text(std::move(text));
  chunk->mutable_token_ids()->Add(pending_ids_.begin(), pending_ids_.end());
  pending_ids_.clear();
}

absl::StatusOr<std::optional<request::FinishReason>> GenerationOutput::Push(
    int32_t token, std::vector<v1::GenerateResponse>& out) {
  if (token < 0 || token >= tokenizer_.vocab_size()) {
    return absl::InvalidArgumentError(absl::StrCat("token ", token, " is outside the vocabulary of ",
                                                   tokenizer_.vocab_size()));
  }
  if (!ignore_eos_) {
    const std::vector<int32_t>& ends = tokenizer_.end_of_generation_ids();
    if (std::find(ends.begin(), ends.end(), token) != ends.end()) return request::FinishReason::kEos;
  }
  generated_.push_back(token);
  pending_ids_.push_back(token);
  sampling::TextStreamStep step = text_.Push(tokenizer_.TokenText(token, previous_token_));
  previous_token_ = token;
  if (!step.text.empty()) AppendChunk(std::move(step.text), out);
  if (step.stopped) return request::FinishReason::kStop;
  if (remaining_tokens() <= 0) return request::FinishReason::kLength;
  return std::nullopt;
}

void GenerationOutput::Finish(request::FinishReason reason, absl::Time arrival, absl::Time now,
                              absl::Time first_chunk_time, v1::GenerateFinal final_fields,
                              RequestRecord& record, std::vector<v1::GenerateResponse>& out) {
  std::string rest = text_.Flush();
  if (!rest.empty() || !pending_ids_.empty()) {
    AppendChunk(std::move(rest), out);
    if (first_chunk_time == absl::InfinitePast()) first_chunk_time = now;
  }
  const int32_t n_completion = static_cast<int32_t>(generated_.size());
  record.completion_tokens = n_completion;
  record.e2e_seconds = absl::ToDoubleSeconds(now - arrival);
  record.ttft_seconds = absl::ToDoubleSeconds(
      (first_chunk_time == absl::InfinitePast() ? now : first_chunk_time) - arrival);
  record.tpot_seconds = n_completion > 1 ? (record.e2e_seconds - record.ttft_seconds) /
                                               static_cast<double>(n_completion - 1)
                                         : 0;
  v1::GenerateFinal* final_message = out.emplace_back().mutable_final();
  *final_message = std::move(final_fields);
  final_message->set_finish_reason(request::FinishReasonName(reason));
  final_message->mutable_usage()->set_prompt_tokens(static_cast<int32_t>(record.prompt_tokens));
  final_message->mutable_usage()->set_completion_tokens(n_completion);
  v1::RequestTiming* timing = final_message->mutable_timing();
  timing->set_queue_seconds(record.queue_seconds);
  timing->set_ttft_seconds(record.ttft_seconds);
  timing->set_tpot_seconds(record.tpot_seconds);
  timing->set_e2e_seconds(record.e2e_seconds);
}

}  // namespace pdserve::router
