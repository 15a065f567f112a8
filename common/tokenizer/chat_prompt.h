#pragma once
// A chat prompt to token ids, the one way every tool does it (pdserve-generate --chat, the
// router): render with the generation prompt opened, then encode with the template's special
// tokens parsed and no extra BOS, as Hugging Face's apply_chat_template does.

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "common/tokenizer/chat_template.h"
#include "common/tokenizer/tokenizer.h"

namespace pdserve::tokenizer {

absl::StatusOr<std::vector<int32_t>> EncodeChatPrompt(const Tokenizer& tokenizer,
                                                      const ChatTemplate& chat_template,
                                                      const std::vector<ChatMessage>& messages);

}  // namespace pdserve::tokenizer
