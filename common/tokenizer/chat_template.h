#pragma once
// Chat prompts rendered in the model's own template (the GGUF tokenizer.chat_template string).
// Templates are recognised, not interpreted: a template we do not support is an error, never a
// guess at the format.

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace pdserve::tokenizer {

struct ChatMessage {
  std::string role;  // "system", "user", "assistant"
  std::string content;
};

class ChatTemplate {
 public:
  // Recognises `template_source` (e.g. SmolLM2's ChatML with its default system message).
  static absl::StatusOr<ChatTemplate> FromSource(absl::string_view template_source);

  // The prompt text, with the assistant's turn opened when add_generation_prompt. Its special
  // tokens are text: encode with EncodeOptions::parse_special = true.
  absl::StatusOr<std::string> Render(const std::vector<ChatMessage>& messages,
                                     bool add_generation_prompt) const;

  const std::string& name() const { return name_; }

 private:
  std::string name_;
  std::string default_system_message_;  // empty: none is added
};

}  // namespace pdserve::tokenizer
