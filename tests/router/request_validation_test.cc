// Prompt encoding of the router with a real chat model (SmolLM2): chat requests are rendered in
// the model's template and encoded with special tokens parsed and no extra BOS, as
// pdserve-generate --chat does; context length comes from the GGUF metadata.

#include "router/request_validation.h"

#include <gtest/gtest.h>

#include "common/tokenizer/chat_prompt.h"

namespace pdserve::router {
namespace {

class SmolLm2ValidationTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    absl::StatusOr<RouterModel> loaded =
        LoadRouterModel(std::string(PDSERVE_ROOT) + "/models/SmolLM2-135M-Instruct.Q4_1.gguf", "");
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    model_ = new RouterModel(*std::move(loaded));
  }
  void SetUp() override { ASSERT_NE(model_, nullptr); }
  static RouterModel* model_;
};

RouterModel* SmolLm2ValidationTest::model_ = nullptr;

TEST_F(SmolLm2ValidationTest, ReadsContextLengthAndChatTemplate) {
  EXPECT_EQ(model_->context_length, 8192);
  EXPECT_TRUE(model_->chat_template.ok()) << model_->chat_template.status();
}

TEST_F(SmolLm2ValidationTest, ChatIsRenderedAndSpecialTokensParsed) {
  v1::GenerateRequest request;
  request.set_max_tokens(8);
  v1::ChatMessage* message = request.mutable_chat()->add_messages();
  message->set_role("user");
  message->set_content("What is 2+2?");
  absl::StatusOr<ValidatedRequest> validated = ValidateGenerateRequest(request, *model_);
  ASSERT_TRUE(validated.ok()) << validated.status();
  absl::StatusOr<std::vector<int32_t>> expected = tokenizer::EncodeChatPrompt(
      *model_->tokenizer, *model_->chat_template, {{"user", "What is 2+2?"}});
  ASSERT_TRUE(expected.ok());
  EXPECT_EQ(validated->prompt_ids, *expected);
  // <|im_start|> is one special token, not its characters, and starts the prompt.
  ASSERT_FALSE(validated->prompt_ids.empty());
  EXPECT_EQ(model_->tokenizer->TokenPiece(validated->prompt_ids[0]), "<|im_start|>");
  // The plain form of the same text has no special tokens.
  v1::GenerateRequest plain;
  plain.set_max_tokens(8);
  plain.set_text("<|im_start|>");
  absl::StatusOr<ValidatedRequest> plain_validated = ValidateGenerateRequest(plain, *model_);
  ASSERT_TRUE(plain_validated.ok());
  EXPECT_GT(plain_validated->prompt_ids.size(), 1u);
}

TEST_F(SmolLm2ValidationTest, ContextLimitNamesBothNumbers) {
  v1::GenerateRequest request;
  request.set_text("Hello");
  request.set_max_tokens(8192);
  absl::StatusOr<ValidatedRequest> validated = ValidateGenerateRequest(request, *model_);
  ASSERT_FALSE(validated.ok());
  EXPECT_EQ(validated.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(validated.status().message().find("8192"), std::string::npos);
  EXPECT_NE(validated.status().message().find("max_tokens"), std::string::npos);
}

TEST_F(SmolLm2ValidationTest, UnsetMaxTokensIsTheRoomLeftInTheContext) {
  v1::GenerateRequest request;
  request.set_text("Hello there");
  absl::StatusOr<ValidatedRequest> validated = ValidateGenerateRequest(request, *model_);
  ASSERT_TRUE(validated.ok()) << validated.status();
  EXPECT_EQ(validated->max_tokens,
            model_->context_length - static_cast<int64_t>(validated->prompt_ids.size()));
  request.set_max_tokens(-1);
  EXPECT_EQ(ValidateGenerateRequest(request, *model_).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(ParseGenerateRequestTest, NamesTheFieldWithInvalidUtf8) {
  v1::GenerateRequest request;
  request.set_max_tokens(3);
  request.add_stop("ok");
  request.add_stop("bad\xC0");
  std::string wire;
  // Serializing logs protobuf's complaint but still writes the bytes.
  ASSERT_TRUE(request.SerializePartialToString(&wire));
  absl::StatusOr<v1::GenerateRequest> parsed = ParseGenerateRequest(wire);
  ASSERT_FALSE(parsed.ok());
  EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(parsed.status().message().find("stop string 1"), std::string::npos)
      << parsed.status().message();

  v1::GenerateRequest good;
  good.set_text("h\xC3\xA9llo");
  good.set_max_tokens(3);
  absl::StatusOr<v1::GenerateRequest> round_trip = ParseGenerateRequest(good.SerializeAsString());
  ASSERT_TRUE(round_trip.ok()) << round_trip.status();
  EXPECT_EQ(round_trip->text(), "h\xC3\xA9llo");
  EXPECT_EQ(ParseGenerateRequest("\xFF\xFF\xFF").status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace pdserve::router
