#pragma once
// The request contract every node checks the same way: what a sequence to run must be (prompt
// ids inside the vocabulary, room in the context, sane sampling), how a generation ends, and the
// load a worker reports. The router checks a client's request with it after tokenizing; prefill
// and decode workers check what the router sends them with it again (a worker port is not the
// router's to vouch for), so that every node refuses bad input with the same words.

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "common/sampling/sampler.h"

namespace pdserve::request {

// How a generation ended.
enum class FinishReason {
  kLength,  // max_tokens generated
  kStop,    // a stop string matched (router only: workers never see text)
  kEos,     // an end-of-generation token (not sent to the client)
};
const char* FinishReasonName(FinishReason reason);  // "length" | "stop" | "eos"
// The inverse of FinishReasonName; nullopt for anything else.
std::optional<FinishReason> ParseFinishReason(absl::string_view name);

// What a model allows.
struct ModelLimits {
  int64_t context_length = 0;  // positions, >= 1
  int64_t vocab_size = 0;      // token ids are in [0, vocab_size)
};

// One sequence as a node receives it. `max_tokens` counts every generated token, the first
// (made by prefill) included; a prefill worker, which makes only the first, passes 1.
struct SequenceRequest {
  absl::string_view request_id;  // empty only with `anonymous`
  absl::Span<const int32_t> prompt_ids;
  int64_t max_tokens = 1;
  const sampling::SamplingParams* sampling = nullptr;  // null: not checked
  // The router checks a client's request before it has an id: no id is required, and messages
  // carry no "request '<id>': " prefix.
  bool anonymous = false;
};

// OK, or InvalidArgument "request '<id>': <what is wrong>" for: an empty request id (unless
// anonymous; that message has no prefix), an empty prompt, max_tokens < 1, prompt + max_tokens past the context,
// a prompt id outside the vocabulary (naming it and its position), bad sampling options.
absl::Status CheckSequenceRequest(const SequenceRequest& request, const ModelLimits& limits);

// Request ids are printed in logs and messages and used as map keys; a client may choose one.
// At most this many bytes, of printable ASCII without spaces.
inline constexpr size_t kMaxRequestIdBytes = 128;
// InvalidArgument naming the problem for an id that is too long or has other bytes; OK for ""
// (the router makes one).
absl::Status CheckClientRequestId(absl::string_view request_id);

// The load a worker reports with each heartbeat (v1::WorkerLoad).
struct WorkerLoad {
  int64_t queue_length = 0;      // requests waiting to start
  int64_t active_sequences = 0;  // sequences being prefilled or decoded
  int64_t free_kv_blocks = 0;
  int64_t total_kv_blocks = 0;
};

}  // namespace pdserve::request
