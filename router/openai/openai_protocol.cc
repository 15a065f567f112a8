#include "router/openai/openai_protocol.h"

#include <limits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/http/http_server.h"
#include "nlohmann/json.hpp"

namespace pdserve::router::openai {
namespace {

using nlohmann::json;

absl::Status Invalid(absl::string_view field, absl::string_view problem) {
  return absl::InvalidArgumentError(absl::StrCat("'", field, "' ", problem));
}

// The field's value, or nullptr when it is absent or null (OpenAI treats null as absent).
const json* Field(const json& body, const char* name) {
  auto it = body.find(name);
  if (it == body.end() || it->is_null()) return nullptr;
  return &*it;
}

absl::StatusOr<double> Number(const json& value, absl::string_view field) {
  if (!value.is_number()) return Invalid(field, "must be a number");
  return value.get<double>();
}

absl::StatusOr<int64_t> Integer(const json& value, absl::string_view field) {
  if (value.is_number_integer()) {
    if (value.is_number_unsigned() &&
        value.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return Invalid(field, "is too large");
    }
    return value.get<int64_t>();
  }
  // 16.0 is an integer in JSON's eyes too (some clients send floats).
  if (value.is_number_float()) {
    const double d = value.get<double>();
    if (d == static_cast<double>(static_cast<int64_t>(d))) return static_cast<int64_t>(d);
  }
  return Invalid(field, "must be an integer");
}

absl::StatusOr<std::string> ContentText(const json& content, absl::string_view field) {
  if (content.is_string()) return content.get<std::string>();
  if (!content.is_array()) return Invalid(field, "must be a string or an array of text parts");
  std::string text;
  for (const json& part : content) {
    if (!part.is_object() || part.value("type", "") != "text" || !part.contains("text") ||
        !part["text"].is_string()) {
      return Invalid(field, "may hold only parts {\"type\": \"text\", \"text\": \"...\"}");
    }
    text += part["text"].get<std::string>();
  }
  return text;
}

absl::Status ParsePrompt(const json& body, v1::GenerateRequest& generate) {
  const json* prompt = Field(body, "prompt");
  if (prompt == nullptr) return Invalid("prompt", "is required");
  if (prompt->is_array()) {
    if (prompt->size() != 1 || !(*prompt)[0].is_string()) {
      return Invalid("prompt", "must be a string or an array of one string (batched and "
                               "token-id prompts are not supported)");
    }
    generate.set_text((*prompt)[0].get<std::string>());
  } else if (prompt->is_string()) {
    generate.set_text(prompt->get<std::string>());
  } else {
    return Invalid("prompt", "must be a string");
  }
  return absl::OkStatus();
}

absl::Status ParseMessages(const json& body, v1::GenerateRequest& generate) {
  const json* messages = Field(body, "messages");
  if (messages == nullptr) return Invalid("messages", "is required");
  if (!messages->is_array() || messages->empty()) {
    return Invalid("messages", "must be a non-empty array");
  }
  v1::ChatPrompt* chat = generate.mutable_chat();
  for (size_t i = 0; i < messages->size(); ++i) {
    const json& message = (*messages)[i];
    const std::string where = absl::StrCat("messages[", i, "]");
    if (!message.is_object()) return Invalid(where, "must be an object");
    const json* role = Field(message, "role");
    if (role == nullptr || !role->is_string()) return Invalid(where + ".role", "is required");
    const std::string role_name = role->get<std::string>();
    if (role_name != "system" && role_name != "user" && role_name != "assistant" &&
        role_name != "developer") {
      return Invalid(where + ".role",
                     absl::StrCat("'", role_name, "' is not one of system, user, assistant"));
    }
    const json* content = Field(message, "content");
    if (content == nullptr) return Invalid(where + ".content", "is required");
    absl::StatusOr<std::string> text = ContentText(*content, where + ".content");
    if (!text.ok()) return text.status();
    v1::ChatMessage* out = chat->add_messages();
    // OpenAI's newer name for the system role; chat templates know "system".
    out->set_role(role_name == "developer" ? "system" : role_name);
    out->set_content(*std::move(text));
  }
  return absl::OkStatus();
}

absl::Status ParseStop(const json& body, v1::GenerateRequest& generate) {
  const json* stop = Field(body, "stop");
  if (stop == nullptr) return absl::OkStatus();
  if (stop->is_string()) {
    generate.add_stop(stop->get<std::string>());
    return absl::OkStatus();
  }
  if (!stop->is_array()) return Invalid("stop", "must be a string or an array of strings");
  for (const json& s : *stop) {
    if (!s.is_string()) return Invalid("stop", "must be a string or an array of strings");
    generate.add_stop(s.get<std::string>());
  }
  return absl::OkStatus();
}

// Refuses fields whose effect the router does not implement, rather than ignoring them.
absl::Status RefuseUnsupported(const json& body) {
  for (const char* name : {"logprobs", "echo"}) {
    if (const json* v = Field(body, name);
        v != nullptr && !(v->is_boolean() && !v->get<bool>()) && !(v->is_number() && v->get<double>() == 0)) {
      return Invalid(name, "is not supported");
    }
  }
  for (const char* name : {"top_logprobs", "suffix", "logit_bias", "tools", "functions",
                           "response_format", "prompt_logprobs"}) {
    if (const json* v = Field(body, name); v != nullptr) {
      if ((v->is_object() || v->is_array() || v->is_string()) && v->empty()) continue;
      if (v->is_string() && v->get<std::string>().empty()) continue;
      if (name == std::string("response_format") && v->is_object() &&
          v->value("type", "") == "text") {
        continue;
      }
      return Invalid(name, "is not supported");
    }
  }
  if (const json* v = Field(body, "best_of"); v != nullptr && !(v->is_number() && v->get<double>() == 1)) {
    return Invalid("best_of", "is not supported (only 1)");
  }
  for (const char* name : {"presence_penalty", "frequency_penalty"}) {
    if (const json* v = Field(body, name); v != nullptr) {
      absl::StatusOr<double> d = Number(*v, name);
      if (!d.ok()) return d.status();
      if (*d != 0) return Invalid(name, "is not supported (use repetition_penalty)");
    }
  }
  return absl::OkStatus();
}

absl::Status ParseSampling(const json& body, v1::GenerateRequest& generate) {
  v1::SamplingOptions* sampling = generate.mutable_sampling();
  if (const json* v = Field(body, "temperature")) {
    absl::StatusOr<double> t = Number(*v, "temperature");
    if (!t.ok()) return t.status();
    if (!(*t >= 0 && *t <= 2)) return Invalid("temperature", absl::StrCat("must be in [0, 2], got ", *t));
    sampling->set_temperature(static_cast<float>(*t));
  }
  if (const json* v = Field(body, "top_p")) {
    absl::StatusOr<double> p = Number(*v, "top_p");
    if (!p.ok()) return p.status();
    if (!(*p > 0 && *p <= 1)) return Invalid("top_p", absl::StrCat("must be in (0, 1], got ", *p));
    sampling->set_top_p(static_cast<float>(*p));
  }
  if (const json* v = Field(body, "top_k")) {
    absl::StatusOr<int64_t> k = Integer(*v, "top_k");
    if (!k.ok()) return k.status();
    if (*k < -1 || *k > std::numeric_limits<int32_t>::max()) {
      return Invalid("top_k", absl::StrCat("must be -1 (off), 0 (off) or positive, got ", *k));
    }
    sampling->set_top_k(*k < 0 ? 0 : static_cast<int32_t>(*k));
  }
  if (const json* v = Field(body, "repetition_penalty")) {
    absl::StatusOr<double> r = Number(*v, "repetition_penalty");
    if (!r.ok()) return r.status();
    if (!(*r > 0)) return Invalid("repetition_penalty", absl::StrCat("must be > 0, got ", *r));
    sampling->set_repetition_penalty(static_cast<float>(*r));
  }
  if (const json* v = Field(body, "seed")) {
    absl::StatusOr<int64_t> seed = Integer(*v, "seed");
    if (!seed.ok()) return seed.status();
    if (*seed < 0) return Invalid("seed", absl::StrCat("must be >= 0, got ", *seed));
    sampling->set_seed(static_cast<uint64_t>(*seed));
  }
  return absl::OkStatus();
}

absl::Status ParseMaxTokens(const json& body, Endpoint endpoint, v1::GenerateRequest& generate) {
  const char* name = "max_tokens";
  const json* v = nullptr;
  if (endpoint == Endpoint::kChatCompletions) v = Field(body, "max_completion_tokens");
  if (v != nullptr) {
    name = "max_completion_tokens";
  } else {
    v = Field(body, "max_tokens");
  }
  if (v == nullptr) {
    // 0 asks the router for the room left in the context.
    generate.set_max_tokens(endpoint == Endpoint::kCompletions ? 16 : 0);
    return absl::OkStatus();
  }
  absl::StatusOr<int64_t> n = Integer(*v, name);
  if (!n.ok()) return n.status();
  if (*n < 1) return Invalid(name, absl::StrCat("must be at least 1, got ", *n));
  if (*n > std::numeric_limits<int32_t>::max()) return Invalid(name, "is too large");
  generate.set_max_tokens(static_cast<int32_t>(*n));
  return absl::OkStatus();
}

json UsageJson(const v1::Usage& usage) {
  return {{"prompt_tokens", usage.prompt_tokens()},
          {"completion_tokens", usage.completion_tokens()},
          {"total_tokens", usage.prompt_tokens() + usage.completion_tokens()}};
}

json Envelope(const ResponseIdentity& identity, bool chunk) {
  const char* object = identity.endpoint == Endpoint::kCompletions
                           ? "text_completion"
                           : (chunk ? "chat.completion.chunk" : "chat.completion");
  return {{"id", identity.id},
          {"object", object},
          {"created", identity.created},
          {"model", identity.model}};
}

// Invalid UTF-8 cannot reach here (the relay's text is valid), but a dump must never throw.
std::string Dump(const json& value) {
  return value.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string Event(const json& value) { return absl::StrCat("data: ", Dump(value), "\n\n"); }

}  // namespace

absl::StatusOr<OpenAiRequest> ParseOpenAiRequest(Endpoint endpoint, absl::string_view body) {
  const json parsed = json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) {
    return absl::InvalidArgumentError("the request body is not valid JSON");
  }
  if (!parsed.is_object()) return absl::InvalidArgumentError("the request body must be a JSON object");

  OpenAiRequest request;
  request.endpoint = endpoint;
  if (const json* model = Field(parsed, "model")) {
    if (!model->is_string()) return Invalid("model", "must be a string");
    request.model = model->get<std::string>();
  }
  absl::Status s = endpoint == Endpoint::kCompletions ? ParsePrompt(parsed, request.generate)
                                                      : ParseMessages(parsed, request.generate);
  if (s.ok()) s = ParseMaxTokens(parsed, endpoint, request.generate);
  if (s.ok()) s = ParseSampling(parsed, request.generate);
  if (s.ok()) s = ParseStop(parsed, request.generate);
  if (s.ok()) s = RefuseUnsupported(parsed);
  if (!s.ok()) return s;
  if (const json* n = Field(parsed, "n")) {
    absl::StatusOr<int64_t> count = Integer(*n, "n");
    if (!count.ok()) return count.status();
    if (*count != 1) return Invalid("n", absl::StrCat("must be 1 (one choice per request), got ", *count));
  }
  if (const json* v = Field(parsed, "ignore_eos")) {
    if (!v->is_boolean()) return Invalid("ignore_eos", "must be true or false");
    request.generate.set_ignore_eos(v->get<bool>());
  }
  if (const json* v = Field(parsed, "stream")) {
    if (!v->is_boolean()) return Invalid("stream", "must be true or false");
    request.stream = v->get<bool>();
  }
  if (const json* options = Field(parsed, "stream_options")) {
    if (!options->is_object()) return Invalid("stream_options", "must be an object");
    if (const json* v = Field(*options, "include_usage")) {
      if (!v->is_boolean()) return Invalid("stream_options.include_usage", "must be true or false");
      request.include_usage = v->get<bool>();
    }
  }
  return request;
}

std::string OpenAiFinishReason(absl::string_view finish_reason) {
  return finish_reason == "length" ? "length" : "stop";
}

std::string CompletionBody(const ResponseIdentity& identity, absl::string_view text,
                           absl::string_view finish_reason, const v1::Usage& usage) {
  json body = Envelope(identity, /*chunk=*/false);
  json choice = {{"index", 0}, {"finish_reason", OpenAiFinishReason(finish_reason)}};
  if (identity.endpoint == Endpoint::kCompletions) {
    choice["text"] = std::string(text);
    choice["logprobs"] = nullptr;
  } else {
    choice["message"] = {{"role", "assistant"}, {"content", std::string(text)}};
    choice["logprobs"] = nullptr;
  }
  body["choices"] = json::array({choice});
  body["usage"] = UsageJson(usage);
  return Dump(body);
}

std::string TextEvent(const ResponseIdentity& identity, absl::string_view text, bool first) {
  json body = Envelope(identity, /*chunk=*/true);
  json choice = {{"index", 0}, {"finish_reason", nullptr}, {"logprobs", nullptr}};
  if (identity.endpoint == Endpoint::kCompletions) {
    choice["text"] = std::string(text);
  } else {
    choice["delta"] = {{"content", std::string(text)}};
    if (first) choice["delta"]["role"] = "assistant";
  }
  body["choices"] = json::array({choice});
  return Event(body);
}

std::string FinalEvents(const ResponseIdentity& identity, absl::string_view finish_reason,
                        const v1::Usage& usage, bool include_usage) {
  json finish = Envelope(identity, /*chunk=*/true);
  json choice = {{"index", 0},
                 {"finish_reason", OpenAiFinishReason(finish_reason)},
                 {"logprobs", nullptr}};
  if (identity.endpoint == Endpoint::kCompletions) {
    choice["text"] = "";
  } else {
    choice["delta"] = json::object();
  }
  finish["choices"] = json::array({choice});
  std::string events = Event(finish);
  if (include_usage) {
    json usage_chunk = Envelope(identity, /*chunk=*/true);
    usage_chunk["choices"] = json::array();
    usage_chunk["usage"] = UsageJson(usage);
    events += Event(usage_chunk);
  }
  events += "data: [DONE]\n\n";
  return events;
}

std::string ErrorEvents(const absl::Status& status) {
  const int http_status = HttpStatusFor(status.code());
  return absl::StrCat("data: ",
                      http::ErrorJson(status.message(), http::ErrorTypeForStatus(http_status)),
                      "\n\ndata: [DONE]\n\n");
}

std::string ModelListBody(absl::string_view model, int64_t created, int64_t context_length) {
  json body = {{"object", "list"},
               {"data", json::array({{{"id", std::string(model)},
                                      {"object", "model"},
                                      {"created", created},
                                      {"owned_by", "pdserve"},
                                      {"max_model_len", context_length}}})}};
  return Dump(body);
}

int HttpStatusFor(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kOk: return 200;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kOutOfRange: return 400;
    case absl::StatusCode::kUnauthenticated: return 401;
    case absl::StatusCode::kPermissionDenied: return 403;
    case absl::StatusCode::kNotFound: return 404;
    case absl::StatusCode::kResourceExhausted: return 429;
    case absl::StatusCode::kCancelled: return 499;
    case absl::StatusCode::kUnavailable: return 503;
    case absl::StatusCode::kDeadlineExceeded: return 504;
    default: return 500;
  }
}

}  // namespace pdserve::router::openai
