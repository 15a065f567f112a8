#include "router/request_validation.h"

#include "absl/strings/str_cat.h"
#include "common/request/request_contract.h"
#include "common/rpc/proto_convert.h"
#include "common/sampling/text_stream.h"
#include "common/tokenizer/chat_prompt.h"
#include "google/protobuf/unknown_field_set.h"

namespace pdserve::router {
namespace {

// InvalidArgument naming `what` and the first bad byte when `text` is not valid UTF-8.
absl::Status CheckUtf8(absl::string_view text, absl::string_view what) {
  const std::string valid = sampling::ToValidUtf8(text);
  if (valid == text) return absl::OkStatus();
  // ToValidUtf8 copies valid bytes unchanged, so the first difference is at (or just after) the
  // first ill-formed byte.
  size_t offset = 0;
  while (offset < text.size() && offset < valid.size() && text[offset] == valid[offset]) ++offset;
  return absl::InvalidArgumentError(
      absl::StrCat(what, " is not valid UTF-8 (near byte ", offset, ")"));
}

absl::StatusOr<std::vector<int32_t>> PromptIds(const v1::GenerateRequest& request,
                                               const RouterModel& model) {
  switch (request.prompt_case()) {
    case v1::GenerateRequest::kText: {
      if (request.text().empty()) return absl::InvalidArgumentError("the prompt text is empty");
      if (absl::Status s = CheckUtf8(request.text(), "the prompt text"); !s.ok()) return s;
      return model.tokenizer->Encode(request.text(), tokenizer::EncodeOptions{});
    }
    case v1::GenerateRequest::kChat: {
      if (request.chat().messages().empty()) {
        return absl::InvalidArgumentError("the chat prompt has no messages");
      }
      std::vector<tokenizer::ChatMessage> messages;
      for (int i = 0; i < request.chat().messages_size(); ++i) {
        const v1::ChatMessage& m = request.chat().messages(i);
        if (absl::Status s = CheckUtf8(m.content(), absl::StrCat("chat message ", i, "'s content"));
            !s.ok()) {
          return s;
        }
        if (absl::Status s = CheckUtf8(m.role(), absl::StrCat("chat message ", i, "'s role"));
            !s.ok()) {
          return s;
        }
        messages.push_back({m.role(), m.content()});
      }
      if (!model.chat_template.ok()) return model.chat_template.status();
      return tokenizer::EncodeChatPrompt(*model.tokenizer, *model.chat_template, messages);
    }
    case v1::GenerateRequest::PROMPT_NOT_SET:
      break;
  }
  return absl::InvalidArgumentError("the request has no prompt (set text or chat)");
}

// The length-delimited fields numbered `number` of an encoded message, in order.
std::vector<std::string> LengthDelimited(const google::protobuf::UnknownFieldSet& fields,
                                         int number) {
  std::vector<std::string> out;
  for (int i = 0; i < fields.field_count(); ++i) {
    const google::protobuf::UnknownField& field = fields.field(i);
    if (field.number() == number &&
        field.type() == google::protobuf::UnknownField::TYPE_LENGTH_DELIMITED) {
      out.push_back(field.length_delimited());
    }
  }
  return out;
}

// Field numbers from router.proto.
constexpr int kRequestText = 1, kRequestChat = 2, kRequestStop = 5, kRequestId = 7;
constexpr int kChatMessages = 1, kMessageRole = 1, kMessageContent = 2;

absl::Status CheckWireUtf8(const std::string& wire) {
  google::protobuf::UnknownFieldSet request;
  if (!request.ParseFromString(wire)) return absl::OkStatus();  // the real parse reports it
  for (const std::string& text : LengthDelimited(request, kRequestText)) {
    if (absl::Status s = CheckUtf8(text, "the prompt text"); !s.ok()) return s;
  }
  int i = 0;
  for (const std::string& stop : LengthDelimited(request, kRequestStop)) {
    if (absl::Status s = CheckUtf8(stop, absl::StrCat("stop string ", i++)); !s.ok()) return s;
  }
  for (const std::string& id : LengthDelimited(request, kRequestId)) {
    if (absl::Status s = CheckUtf8(id, "request_id"); !s.ok()) return s;
  }
  for (const std::string& chat_wire : LengthDelimited(request, kRequestChat)) {
    google::protobuf::UnknownFieldSet chat;
    if (!chat.ParseFromString(chat_wire)) continue;
    int m = 0;
    for (const std::string& message_wire : LengthDelimited(chat, kChatMessages)) {
      google::protobuf::UnknownFieldSet message;
      if (message.ParseFromString(message_wire)) {
        for (const std::string& role : LengthDelimited(message, kMessageRole)) {
          if (absl::Status s = CheckUtf8(role, absl::StrCat("chat message ", m, "'s role"));
              !s.ok()) {
            return s;
          }
        }
        for (const std::string& content : LengthDelimited(message, kMessageContent)) {
          if (absl::Status s = CheckUtf8(content, absl::StrCat("chat message ", m, "'s content"));
              !s.ok()) {
            return s;
          }
        }
      }
      ++m;
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<v1::GenerateRequest> ParseGenerateRequest(const std::string& wire) {
  if (absl::Status s = CheckWireUtf8(wire); !s.ok()) return s;
  v1::GenerateRequest request;
  if (!request.ParseFromString(wire)) {
    return absl::InvalidArgumentError("the request is not a valid GenerateRequest message");
  }
  return request;
}

absl::StatusOr<ValidatedRequest> ValidateGenerateRequest(const v1::GenerateRequest& request,
                                                         const RouterModel& model) {
  ValidatedRequest out;
  out.max_tokens = request.max_tokens();
  out.sampling = rpc::SamplingFromProto(request.sampling());
  for (int i = 0; i < request.stop_size(); ++i) {
    if (request.stop(i).empty()) {
      return absl::InvalidArgumentError(absl::StrCat("stop string ", i, " is empty"));
    }
    if (absl::Status s = CheckUtf8(request.stop(i), absl::StrCat("stop string ", i)); !s.ok()) {
      return s;
    }
    out.stop.push_back(request.stop(i));
  }
  out.ignore_eos = request.ignore_eos();
  absl::StatusOr<std::vector<int32_t>> ids = PromptIds(request, model);
  if (!ids.ok()) {
    if (ids.status().code() == absl::StatusCode::kInvalidArgument) return ids.status();
    return absl::Status(ids.status().code(), absl::StrCat("prompt: ", ids.status().message()));
  }
  if (ids->empty()) return absl::InvalidArgumentError("the prompt encodes to no tokens");
  if (out.max_tokens == 0) {
    // Unset: as many as the context has room for (vLLM's and OpenAI chat's default).
    const int64_t room = static_cast<int64_t>(model.context_length) - static_cast<int64_t>(ids->size());
    if (room < 1) {
      return absl::InvalidArgumentError(absl::StrCat(
          "the prompt of ", ids->size(), " tokens fills the model's context of ",
          model.context_length, " tokens: no room for a token"));
    }
    out.max_tokens = static_cast<int32_t>(room);
  }
  // The same checks every worker makes of what the router sends it.
  request::SequenceRequest sequence;
  sequence.prompt_ids = *ids;
  sequence.max_tokens = out.max_tokens;
  sequence.sampling = &out.sampling;
  sequence.anonymous = true;
  if (absl::Status s = request::CheckSequenceRequest(
          sequence, {model.context_length, model.tokenizer->vocab_size()});
      !s.ok()) {
    return s;
  }
  out.prompt_ids = *std::move(ids);
  return out;
}

}  // namespace pdserve::router
