#include "common/request/request_contract.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace pdserve::request {
namespace {

constexpr ModelLimits kLimits{/*context_length=*/16, /*vocab_size=*/100};

absl::Status Check(std::vector<int32_t> ids, int64_t max_tokens, std::string id = "r-1",
                   const sampling::SamplingParams* sampling = nullptr, bool anonymous = false) {
  SequenceRequest request;
  request.request_id = id;
  request.prompt_ids = ids;
  request.max_tokens = max_tokens;
  request.sampling = sampling;
  request.anonymous = anonymous;
  return CheckSequenceRequest(request, kLimits);
}

void ExpectRefused(const absl::Status& status, const std::string& part) {
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_NE(status.message().find(part), std::string::npos) << status << " lacks " << part;
}

TEST(CheckSequenceRequestTest, AcceptsASequenceThatFitsExactly) {
  EXPECT_TRUE(Check({1, 2, 3}, 13).ok());
}

TEST(CheckSequenceRequestTest, RefusesEachProblemNamingTheRequest) {
  ExpectRefused(Check({1}, 1, ""), "request_id is empty");
  ExpectRefused(Check({}, 1), "request 'r-1': the prompt is empty");
  ExpectRefused(Check({1}, 0), "max_tokens must be at least 1, got 0");
  ExpectRefused(Check({1, 2, 3}, 14), "exceeds the model's context length of 16");
  ExpectRefused(Check({1, 100, 3}, 1), "prompt token id 100 at position 1");
  ExpectRefused(Check({-1}, 1), "outside the vocabulary [0, 100)");
  sampling::SamplingParams bad;
  bad.top_p = 0;
  ExpectRefused(Check({1}, 1, "r-1", &bad), "request 'r-1': ");
  ExpectRefused(Check({1}, 1, "r-1", &bad), "top_p");
}

TEST(CheckSequenceRequestTest, AnonymousNeedsNoIdAndHasNoPrefix) {
  EXPECT_TRUE(Check({1}, 1, "", nullptr, /*anonymous=*/true).ok());
  const absl::Status status = Check({1, 2}, 15, "", nullptr, /*anonymous=*/true);
  ExpectRefused(status, "prompt of 2 tokens + max_tokens 15");
  EXPECT_EQ(status.message().find("request '"), std::string::npos) << status;
}

TEST(CheckClientRequestIdTest, AllowsEmptyAndPrintableAsciiOnly) {
  EXPECT_TRUE(CheckClientRequestId("").ok());
  EXPECT_TRUE(CheckClientRequestId("client-7/a.b_c").ok());
  ExpectRefused(CheckClientRequestId("has space"), "byte 0x20 at offset 3");
  ExpectRefused(CheckClientRequestId("new\nline"), "byte 0x0a");
  ExpectRefused(CheckClientRequestId(std::string(kMaxRequestIdBytes + 1, 'a')), "129 bytes");
  EXPECT_TRUE(CheckClientRequestId(std::string(kMaxRequestIdBytes, 'a')).ok());
}

TEST(FinishReasonTest, NamesRoundTrip) {
  for (FinishReason reason : {FinishReason::kLength, FinishReason::kStop, FinishReason::kEos}) {
    EXPECT_EQ(ParseFinishReason(FinishReasonName(reason)), reason);
  }
  EXPECT_STREQ(FinishReasonName(FinishReason::kEos), "eos");
  EXPECT_FALSE(ParseFinishReason("bos").has_value());
  EXPECT_FALSE(ParseFinishReason("").has_value());
}

}  // namespace
}  // namespace pdserve::request
