#pragma once
// Checks a GenerateRequest and turns its prompt into token ids with the model's tokenizer. Every
// problem is InvalidArgument naming what is wrong (a chat request on a model without a chat
// template keeps that error's code).

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/sampling/sampler.h"
#include "router.pb.h"
#include "router/router_model.h"

namespace pdserve::router {

struct ValidatedRequest {
  std::vector<int32_t> prompt_ids;  // non-empty
  int32_t max_tokens = 0;           // >= 1; prompt + max_tokens <= context length (a request's 0
                                    // becomes what the context has room for)
  sampling::SamplingParams sampling;
  std::vector<std::string> stop;    // each non-empty
  bool ignore_eos = false;
};

// Parses a GenerateRequest from its wire bytes. Protobuf refuses a string field with invalid
// UTF-8 with no word on which; this names it (InvalidArgument) instead.
absl::StatusOr<v1::GenerateRequest> ParseGenerateRequest(const std::string& wire);

absl::StatusOr<ValidatedRequest> ValidateGenerateRequest(const v1::GenerateRequest& request,
                                                         const RouterModel& model);

}  // namespace pdserve::router
