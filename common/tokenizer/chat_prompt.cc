#include "common/tokenizer/chat_prompt.h"

#include <string>

namespace pdserve::tokenizer {

absl::StatusOr<std::vector<int32_t>> EncodeChatPrompt(const Tokenizer& tokenizer,
                                                      const ChatTemplate& chat_template,
                                                      const std::vector<ChatMessage>& messages) {
  absl::StatusOr<std::string> text = chat_template.Render(messages, /*add_generation_prompt=*/true);
  if (!text.ok()) return text.status();
  // The template writes every special token itself.
  EncodeOptions options;
  options.parse_special = true;
  options.add_bos = false;
  return tokenizer.Encode(*text, options);
}

}  // namespace pdserve::tokenizer
