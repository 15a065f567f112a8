#pragma once
// What the client sees of one generation: the generated tokens become text chunks (whole UTF-8
// characters, stop strings cut: sampling::TextStream), the end-of-generation and length checks
// decide when it ends, and the final message carries the finish reason, usage and timing. Plain
// C++: the relay feeds it tokens in order, whichever worker made them, and sends what it
// returns.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/request/request_contract.h"
#include "common/sampling/text_stream.h"
#include "common/tokenizer/tokenizer.h"
#include "router.pb.h"
#include "router/router_stats.h"

namespace pdserve::router {

class GenerationOutput {
 public:
  // `prompt_ids` non-empty; `tokenizer` outlives this.
  GenerationOutput(const tokenizer::Tokenizer& tokenizer, const std::vector<int32_t>& prompt_ids,
                   int32_t max_tokens, bool ignore_eos, std::vector<std::string> stop);

  // Takes the next generated token. Appends the chunk to send (if any) to `out`. Returns the
  // finish reason once the generation is over (this token ended it), nullopt to go on.
  // InvalidArgument for a token outside the vocabulary.
  absl::StatusOr<std::optional<request::FinishReason>> Push(
      int32_t token, std::vector<v1::GenerateResponse>& out);

  // The rest of the text (if any) and the final message, appended to `out`; fills the timing,
  // usage and counts of `record`. `first_chunk_time` is when the first chunk went out (the
  // relay knows; InfinitePast when none did).
  void Finish(request::FinishReason reason, absl::Time arrival, absl::Time now,
              absl::Time first_chunk_time, v1::GenerateFinal final_fields, RequestRecord& record,
              std::vector<v1::GenerateResponse>& out);

  // Every generated token so far (end token excluded): a failover's new prompt is the original
  // one followed by these.
  const std::vector<int32_t>& generated() const { return generated_; }
  int32_t remaining_tokens() const { return max_tokens_ - static_cast<int32_t>(generated_.size()); }

 private:
  void AppendChunk(std::string text, std::vector<v1::GenerateResponse>& out);

  const tokenizer::Tokenizer& tokenizer_;
  const int32_t max_tokens_;
  const bool ignore_eos_;
  sampling::TextStream text_;
  std::vector<int32_t> generated_;
  std::vector<int32_t> pending_ids_;  // tokens whose text has not gone out yet
  int32_t previous_token_;
};

}  // namespace pdserve::router
