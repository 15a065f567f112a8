#pragma once
// OpenAI's HTTP API in terms of the router's own request and response messages: request bodies of
// /v1/completions and /v1/chat/completions to a GenerateRequest, the relay's GenerateResponses
// to response bodies and server-sent events, router statuses to HTTP statuses. Pure functions:
// the HTTP front (openai_front.h) does the I/O.
//
// Request fields taken: model, prompt (completions: a string, or an array of one string) or
// messages (chat: role system/user/assistant, content a string or an array of text parts),
// max_tokens and max_completion_tokens (chat; takes precedence), temperature [0, 2], top_p
// (0, 1], seed, stop (a string or an array of strings), n (1 only), stream,
// stream_options.include_usage, and vLLM's extensions top_k (-1 or 0: off), repetition_penalty
// and ignore_eos. Fields that would change the answer in ways the router does not implement
// (logprobs, echo, best_of, suffix, logit_bias, tools, response_format, presence and frequency
// penalties other than 0) are refused with InvalidArgument rather than ignored; other unknown
// fields (user, metadata, ...) are ignored as OpenAI's own server ignores what it does not use.
// Defaults: max_tokens 16 for completions (OpenAI's), up to the context's end for chat.

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "router.pb.h"

namespace pdserve::router::openai {

enum class Endpoint { kCompletions, kChatCompletions };

struct OpenAiRequest {
  Endpoint endpoint = Endpoint::kCompletions;
  std::string model;  // as the client named it; empty when it named none
  v1::GenerateRequest generate;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
};

// InvalidArgument naming the field for a body that is not a valid request of `endpoint`.
absl::StatusOr<OpenAiRequest> ParseOpenAiRequest(Endpoint endpoint, absl::string_view body);

// What every response body of one request shares.
struct ResponseIdentity {
  Endpoint endpoint = Endpoint::kCompletions;
  std::string id;       // "cmpl-..." or "chatcmpl-..."
  int64_t created = 0;  // Unix seconds
  std::string model;    // the served model's name
};

// OpenAI's finish_reason for the router's ("eos" | "stop" | "length"): eos and stop are "stop".
std::string OpenAiFinishReason(absl::string_view finish_reason);

// A whole (non-streamed) response: text_completion or chat.completion.
std::string CompletionBody(const ResponseIdentity& identity, absl::string_view text,
                           absl::string_view finish_reason, const v1::Usage& usage);

// Server-sent events, each "data: {json}\n\n". The first chunk of a chat stream carries the
// assistant role; `text` may be empty.
std::string TextEvent(const ResponseIdentity& identity, absl::string_view text, bool first);
// The final events: one with the finish reason, then (include_usage) one with no choices and the
// usage, then "data: [DONE]".
std::string FinalEvents(const ResponseIdentity& identity, absl::string_view finish_reason,
                        const v1::Usage& usage, bool include_usage);
// An error after the stream began (its status line was 200): one event with OpenAI's error
// object, then "data: [DONE]".
std::string ErrorEvents(const absl::Status& status);

// GET /v1/models.
std::string ModelListBody(absl::string_view model, int64_t created, int64_t context_length);

// The HTTP status for a router status: INVALID_ARGUMENT and FAILED_PRECONDITION 400,
// UNAUTHENTICATED 401, PERMISSION_DENIED 403, NOT_FOUND 404, RESOURCE_EXHAUSTED 429, CANCELLED
// 499, UNAVAILABLE 503, DEADLINE_EXCEEDED 504, anything else 500.
int HttpStatusFor(absl::StatusCode code);

}  // namespace pdserve::router::openai
