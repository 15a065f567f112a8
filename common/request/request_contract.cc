#include "common/request/request_contract.h"

#include "absl/strings/str_cat.h"

namespace pdserve::request {

const char* FinishReasonName(FinishReason reason) {
  switch (reason) {
    case FinishReason::kLength: return "length";
    case FinishReason::kStop: return "stop";
    case FinishReason::kEos: return "eos";
  }
  return "length";
}

std::optional<FinishReason> ParseFinishReason(absl::string_view name) {
  for (FinishReason reason : {FinishReason::kLength, FinishReason::kStop, FinishReason::kEos}) {
    if (name == FinishReasonName(reason)) return reason;
  }
  return std::nullopt;
}

absl::Status CheckSequenceRequest(const SequenceRequest& request, const ModelLimits& limits) {
  if (request.request_id.empty() && !request.anonymous) {
    return absl::InvalidArgumentError("request_id is empty");
  }
  auto refuse = [&](auto&&... what) {
    if (request.anonymous) return absl::InvalidArgumentError(absl::StrCat(what...));
    return absl::InvalidArgumentError(absl::StrCat("request '", request.request_id, "': ", what...));
  };
  if (request.prompt_ids.empty()) return refuse("the prompt is empty");
  if (request.max_tokens < 1) {
    return refuse("max_tokens must be at least 1, got ", request.max_tokens);
  }
  const int64_t n_prompt = static_cast<int64_t>(request.prompt_ids.size());
  if (n_prompt + request.max_tokens > limits.context_length) {
    return refuse("prompt of ", n_prompt, " tokens + max_tokens ", request.max_tokens,
                  " exceeds the model's context length of ", limits.context_length);
  }
  for (size_t i = 0; i < request.prompt_ids.size(); ++i) {
    const int32_t id = request.prompt_ids[i];
    if (id < 0 || id >= limits.vocab_size) {
      return refuse("prompt token id ", id, " at position ", i, " is outside the vocabulary [0, ",
                    limits.vocab_size, ")");
    }
  }
  if (request.sampling != nullptr) {
    if (absl::Status s = sampling::ValidateSamplingParams(*request.sampling); !s.ok()) {
      return refuse(s.message());
    }
  }
  return absl::OkStatus();
}

absl::Status CheckClientRequestId(absl::string_view request_id) {
  if (request_id.size() > kMaxRequestIdBytes) {
    return absl::InvalidArgumentError(absl::StrCat("request_id is ", request_id.size(),
                                                   " bytes long; at most ", kMaxRequestIdBytes,
                                                   " are allowed"));
  }
  for (size_t i = 0; i < request_id.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(request_id[i]);
    if (c <= ' ' || c >= 0x7f) {
      return absl::InvalidArgumentError(absl::StrCat(
          "request_id has byte 0x", absl::Hex(c, absl::kZeroPad2), " at offset ", i,
          "; only printable ASCII without spaces is allowed"));
    }
  }
  return absl::OkStatus();
}

}  // namespace pdserve::request
