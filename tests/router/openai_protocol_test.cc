// OpenAI request bodies to GenerateRequests and the relay's answers to OpenAI bodies and events.

#include "router/openai/openai_protocol.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "nlohmann/json.hpp"

namespace pdserve::router::openai {
namespace {

using nlohmann::json;

OpenAiRequest MustParse(Endpoint endpoint, const std::string& body) {
  absl::StatusOr<OpenAiRequest> request = ParseOpenAiRequest(endpoint, body);
  EXPECT_TRUE(request.ok()) << body << ": " << request.status();
  return request.ok() ? *request : OpenAiRequest{};
}

// The JSON objects of "data: {...}" events, and whether the stream ended with [DONE].
std::vector<json> Events(const std::string& stream, bool* done) {
  std::vector<json> out;
  *done = false;
  for (absl::string_view event : absl::StrSplit(stream, "\n\n", absl::SkipEmpty())) {
    EXPECT_TRUE(absl::ConsumePrefix(&event, "data: ")) << event;
    if (event == "[DONE]") {
      *done = true;
      continue;
    }
    EXPECT_FALSE(*done) << "an event after [DONE]";
    out.push_back(json::parse(event));
  }
  return out;
}

TEST(OpenAiProtocolTest, CompletionFieldsMapToTheGenerateRequest) {
  OpenAiRequest r = MustParse(Endpoint::kCompletions, R"({
      "model": "m", "prompt": "Once upon", "max_tokens": 7, "temperature": 0.5, "top_p": 0.9,
      "seed": 42, "stop": ["\n", "END"], "n": 1, "top_k": 40, "repetition_penalty": 1.1,
      "ignore_eos": true, "stream": true, "stream_options": {"include_usage": true},
      "user": "ignored"})");
  EXPECT_EQ(r.model, "m");
  EXPECT_EQ(r.generate.text(), "Once upon");
  EXPECT_EQ(r.generate.max_tokens(), 7);
  EXPECT_FLOAT_EQ(r.generate.sampling().temperature(), 0.5f);
  EXPECT_FLOAT_EQ(r.generate.sampling().top_p(), 0.9f);
  EXPECT_EQ(r.generate.sampling().seed(), 42u);
  EXPECT_EQ(r.generate.sampling().top_k(), 40);
  EXPECT_FLOAT_EQ(r.generate.sampling().repetition_penalty(), 1.1f);
  ASSERT_EQ(r.generate.stop_size(), 2);
  EXPECT_EQ(r.generate.stop(0), "\n");
  EXPECT_TRUE(r.generate.ignore_eos());
  EXPECT_TRUE(r.stream);
  EXPECT_TRUE(r.include_usage);
}

TEST(OpenAiProtocolTest, DefaultsFollowOpenAi) {
  OpenAiRequest completion = MustParse(Endpoint::kCompletions, R"({"prompt": ["Hi"]})");
  EXPECT_EQ(completion.generate.text(), "Hi");
  EXPECT_EQ(completion.generate.max_tokens(), 16);
  EXPECT_FALSE(completion.generate.sampling().has_temperature());
  EXPECT_FALSE(completion.stream);
  EXPECT_TRUE(completion.model.empty());
  // Chat without a limit runs to the context's end (0 asks the router for that).
  OpenAiRequest chat = MustParse(Endpoint::kChatCompletions,
                                 R"({"messages": [{"role": "user", "content": "Hi"}]})");
  EXPECT_EQ(chat.generate.max_tokens(), 0);
  // top_k -1 is vLLM's "off".
  EXPECT_EQ(MustParse(Endpoint::kCompletions, R"({"prompt": "x", "top_k": -1})")
                .generate.sampling()
                .top_k(),
            0);
}

TEST(OpenAiProtocolTest, ChatMessagesKeepRolesAndJoinTextParts) {
  OpenAiRequest r = MustParse(Endpoint::kChatCompletions, R"({
      "messages": [{"role": "developer", "content": "Be brief."},
                   {"role": "user", "content": [{"type": "text", "text": "Hi "},
                                                {"type": "text", "text": "there"}]},
                   {"role": "assistant", "content": "Hello"}],
      "max_completion_tokens": 5, "max_tokens": 99})");
  ASSERT_EQ(r.generate.chat().messages_size(), 3);
  EXPECT_EQ(r.generate.chat().messages(0).role(), "system");
  EXPECT_EQ(r.generate.chat().messages(1).content(), "Hi there");
  EXPECT_EQ(r.generate.chat().messages(2).role(), "assistant");
  EXPECT_EQ(r.generate.max_tokens(), 5);  // max_completion_tokens wins
}

TEST(OpenAiProtocolTest, BadRequestsAreInvalidArgumentNamingTheField) {
  struct Case {
    Endpoint endpoint;
    std::string body;
    std::string field;
  };
  const std::vector<Case> cases = {
      {Endpoint::kCompletions, "{not json", "not valid JSON"},
      {Endpoint::kCompletions, "[1, 2]", "JSON object"},
      {Endpoint::kCompletions, R"({"max_tokens": 3})", "'prompt' is required"},
      {Endpoint::kCompletions, R"({"prompt": ["a", "b"]})", "'prompt'"},
      {Endpoint::kCompletions, R"({"prompt": [1, 2, 3]})", "token-id"},
      {Endpoint::kCompletions, R"({"prompt": "x", "max_tokens": 0})", "'max_tokens'"},
      {Endpoint::kCompletions, R"({"prompt": "x", "max_tokens": 2.5})", "'max_tokens'"},
      {Endpoint::kCompletions, R"({"prompt": "x", "temperature": 3})", "'temperature'"},
      {Endpoint::kCompletions, R"({"prompt": "x", "temperature": -0.1})", "'temperature'"},
      {Endpoint::kCompletions, R"({"prompt": "x", "temperature": "hot"})", "'temperature'"},
      {Endpoint::kCompletions, R"({"prompt": "x", "top_p": 0})", "'top_p'"},
      {Endpoint::kCompletions, R"({"prompt": "x", "n": 2})", "'n'"},
      {Endpoint::kCompletions, R"({"prompt": "x", "seed": -1})", "'seed'"},
      {Endpoint::kCompletions, R"({"prompt": "x", "stop": 5})", "'stop'"},
      {Endpoint::kCompletions, R"({"prompt": "x", "logprobs": 3})", "'logprobs'"},
      {Endpoint::kCompletions, R"({"prompt": "x", "presence_penalty": 0.5})", "'presence_penalty'"},
      {Endpoint::kCompletions, R"({"prompt": "x", "stream": "yes"})", "'stream'"},
      {Endpoint::kCompletions, R"({"prompt": "x", "model": 7})", "'model'"},
      {Endpoint::kChatCompletions, R"({"model": "m"})", "'messages' is required"},
      {Endpoint::kChatCompletions, R"({"messages": []})", "'messages'"},
      {Endpoint::kChatCompletions, R"({"messages": [{"role": "tool", "content": "x"}]})",
       "'messages[0].role'"},
      {Endpoint::kChatCompletions, R"({"messages": [{"role": "user"}]})", "'messages[0].content'"},
      {Endpoint::kChatCompletions,
       R"({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]})",
       "'messages[0].content'"},
      {Endpoint::kChatCompletions,
       R"({"messages": [{"role": "user", "content": "x"}], "max_completion_tokens": -2})",
       "'max_completion_tokens'"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<OpenAiRequest> r = ParseOpenAiRequest(c.endpoint, c.body);
    ASSERT_FALSE(r.ok()) << c.body;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << c.body;
    EXPECT_NE(r.status().message().find(c.field), std::string::npos)
        << c.body << ": '" << r.status().message() << "' lacks " << c.field;
  }
}

TEST(OpenAiProtocolTest, NeutralValuesOfUnsupportedFieldsAreAccepted) {
  MustParse(Endpoint::kCompletions,
            R"({"prompt": "x", "logprobs": null, "echo": false, "presence_penalty": 0,
                "frequency_penalty": 0.0, "best_of": 1, "logit_bias": {}})");
  MustParse(Endpoint::kChatCompletions,
            R"({"messages": [{"role": "user", "content": "x"}], "logprobs": false,
                "response_format": {"type": "text"}, "tools": []})");
}

TEST(OpenAiProtocolTest, FinishReasonsMapToOpenAis) {
  EXPECT_EQ(OpenAiFinishReason("eos"), "stop");
  EXPECT_EQ(OpenAiFinishReason("stop"), "stop");
  EXPECT_EQ(OpenAiFinishReason("length"), "length");
}

TEST(OpenAiProtocolTest, WholeResponsesHaveOpenAisShape) {
  v1::Usage usage;
  usage.set_prompt_tokens(5);
  usage.set_completion_tokens(3);
  const json completion = json::parse(CompletionBody(
      {Endpoint::kCompletions, "cmpl-1", 100, "m"}, "abc", "length", usage));
  EXPECT_EQ(completion["object"], "text_completion");
  EXPECT_EQ(completion["id"], "cmpl-1");
  EXPECT_EQ(completion["model"], "m");
  EXPECT_EQ(completion["choices"][0]["text"], "abc");
  EXPECT_EQ(completion["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(completion["usage"]["total_tokens"], 8);
  const json chat = json::parse(CompletionBody(
      {Endpoint::kChatCompletions, "chatcmpl-1", 100, "m"}, "hi", "eos", usage));
  EXPECT_EQ(chat["object"], "chat.completion");
  EXPECT_EQ(chat["choices"][0]["message"]["role"], "assistant");
  EXPECT_EQ(chat["choices"][0]["message"]["content"], "hi");
  EXPECT_EQ(chat["choices"][0]["finish_reason"], "stop");
}

TEST(OpenAiProtocolTest, ChatStreamEventsCarryRoleDeltasFinishUsageAndDone) {
  const ResponseIdentity id{Endpoint::kChatCompletions, "chatcmpl-9", 100, "m"};
  v1::Usage usage;
  usage.set_prompt_tokens(4);
  usage.set_completion_tokens(2);
  const std::string stream = TextEvent(id, "He", /*first=*/true) +
                             TextEvent(id, "llo", /*first=*/false) +
                             FinalEvents(id, "stop", usage, /*include_usage=*/true);
  bool done = false;
  const std::vector<json> events = Events(stream, &done);
  EXPECT_TRUE(done);
  ASSERT_EQ(events.size(), 4u);
  EXPECT_EQ(events[0]["object"], "chat.completion.chunk");
  EXPECT_EQ(events[0]["choices"][0]["delta"]["role"], "assistant");
  EXPECT_EQ(events[0]["choices"][0]["delta"]["content"], "He");
  EXPECT_FALSE(events[1]["choices"][0]["delta"].contains("role"));
  EXPECT_EQ(events[2]["choices"][0]["finish_reason"], "stop");
  EXPECT_TRUE(events[3]["choices"].empty());
  EXPECT_EQ(events[3]["usage"]["completion_tokens"], 2);
  // Without include_usage there is no usage event.
  EXPECT_EQ(Events(FinalEvents(id, "length", usage, false), &done).size(), 1u);
}

TEST(OpenAiProtocolTest, ErrorsMidStreamAreAnErrorEventThenDone) {
  bool done = false;
  const std::vector<json> events =
      Events(ErrorEvents(absl::UnavailableError("decode-0 is gone")), &done);
  EXPECT_TRUE(done);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0]["error"]["message"], "decode-0 is gone");
  EXPECT_EQ(events[0]["error"]["type"], "service_unavailable_error");
}

TEST(OpenAiProtocolTest, StatusesMapToHttpStatuses) {
  EXPECT_EQ(HttpStatusFor(absl::StatusCode::kInvalidArgument), 400);
  EXPECT_EQ(HttpStatusFor(absl::StatusCode::kNotFound), 404);
  EXPECT_EQ(HttpStatusFor(absl::StatusCode::kResourceExhausted), 429);
  EXPECT_EQ(HttpStatusFor(absl::StatusCode::kUnavailable), 503);
  EXPECT_EQ(HttpStatusFor(absl::StatusCode::kDeadlineExceeded), 504);
  EXPECT_EQ(HttpStatusFor(absl::StatusCode::kUnauthenticated), 401);
  EXPECT_EQ(HttpStatusFor(absl::StatusCode::kInternal), 500);
}

TEST(OpenAiProtocolTest, ModelListNamesTheServedModel) {
  const json list = json::parse(ModelListBody("stories", 100, 512));
  EXPECT_EQ(list["object"], "list");
  ASSERT_EQ(list["data"].size(), 1u);
  EXPECT_EQ(list["data"][0]["id"], "stories");
  EXPECT_EQ(list["data"][0]["max_model_len"], 512);
}

}  // namespace
}  // namespace pdserve::router::openai
