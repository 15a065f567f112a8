// The chat template: recognising any template source, and rendering any messages. The first
// byte's bit 0 picks the template: set, a piece of the input is the template source; clear,
// SmolLM2's real template. Bit 1 opens the assistant's turn. The rest is messages, each a role
// piece and a content piece (fuzz_input.h).
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "common/tokenizer/chat_template.h"
#include "tests/fuzz/fuzz_input.h"
#include "tests/fuzz/fuzz_targets.h"

namespace pdserve::fuzz {
namespace {

// SmolLM2-135M-Instruct's tokenizer.chat_template, as stored in its GGUF.
constexpr absl::string_view kSmolLm2Template =
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
    "Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ "
    "'<|im_start|>assistant\n' }}{% endif %}";

}  // namespace

bool InitChatTemplateFuzz() { return true; }

int ChatTemplateFuzz(const uint8_t* data, size_t size) {
  FuzzInput input(data, size);
  const uint8_t flags = input.TakeByte();
  const absl::string_view source = (flags & 1) != 0 ? input.TakePiece() : kSmolLm2Template;
  const bool add_generation_prompt = (flags & 2) != 0;
  absl::StatusOr<tokenizer::ChatTemplate> chat = tokenizer::ChatTemplate::FromSource(source);
  if (!chat.ok()) {
    PDSERVE_FUZZ_CHECK(absl::IsUnimplemented(chat.status()), chat.status().ToString());
    return 0;
  }
  std::vector<tokenizer::ChatMessage> messages;
  while (!input.empty() && messages.size() < 64) {
    const absl::string_view role = input.TakePiece();
    messages.push_back({std::string(role), std::string(input.TakePiece())});
  }
  absl::StatusOr<std::string> prompt = chat->Render(messages, add_generation_prompt);
  if (!prompt.ok()) return 0;
  // Every message's content is in the prompt, in order.
  size_t at = 0;
  for (const tokenizer::ChatMessage& m : messages) {
    const size_t found = prompt->find(m.content, at);
    PDSERVE_FUZZ_CHECK(found != std::string::npos, "a message's content is not in the prompt");
    at = found + m.content.size();
  }
  PDSERVE_FUZZ_CHECK(!add_generation_prompt || absl::EndsWith(*prompt, "<|im_start|>assistant\n"),
                     "the assistant's turn is not open");
  return 0;
}

}  // namespace pdserve::fuzz

PDSERVE_FUZZ_TARGET(pdserve::fuzz::InitChatTemplateFuzz, pdserve::fuzz::ChatTemplateFuzz)
