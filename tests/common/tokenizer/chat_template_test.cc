// Chat templates: recognition and rendering. Expected prompts are what jinja renders from the
// same template (transformers' render_jinja_template, as apply_chat_template does).

#include "common/tokenizer/chat_template.h"

#include <string>
#include <vector>

#include "absl/strings/str_replace.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace pdserve::tokenizer {
namespace {

using ::testing::HasSubstr;

// SmolLM2-135M-Instruct's tokenizer.chat_template, as stored in its GGUF.
constexpr char kSmolLm2Template[] =
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
    "Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ "
    "'<|im_start|>assistant\n' }}{% endif %}";

constexpr char kPlainChatMlTemplate[] =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] "
    "+ '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' "
    "}}{% endif %}";

constexpr char kDefaultSystem[] =
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
    "Face<|im_end|>\n";

TEST(ChatTemplateTest, SmolLm2AddsItsDefaultSystemMessage) {
  auto chat = ChatTemplate::FromSource(kSmolLm2Template);
  ASSERT_TRUE(chat.ok()) << chat.status();
  EXPECT_EQ(chat->name(), "chatml-default-system");
  EXPECT_EQ(*chat->Render({{"user", "Hi"}}, true),
            std::string(kDefaultSystem) + "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(*chat->Render({{"user", "Hi"}}, false),
            std::string(kDefaultSystem) + "<|im_start|>user\nHi<|im_end|>\n");
}

TEST(ChatTemplateTest, SmolLm2KeepsAGivenSystemMessage) {
  auto chat = ChatTemplate::FromSource(kSmolLm2Template);
  ASSERT_TRUE(chat.ok());
  EXPECT_EQ(*chat->Render({{"system", "Be brief."}, {"user", "What is 2+2?"}}, true),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
            "<|im_start|>assistant\n");
}

TEST(ChatTemplateTest, SmolLm2MultiTurnAndEmpty) {
  auto chat = ChatTemplate::FromSource(kSmolLm2Template);
  ASSERT_TRUE(chat.ok());
  EXPECT_EQ(*chat->Render({{"user", "a"}, {"assistant", "b"}, {"user", "c"}}, true),
            std::string(kDefaultSystem) +
                "<|im_start|>user\na<|im_end|>\n<|im_start|>assistant\nb<|im_end|>\n"
                "<|im_start|>user\nc<|im_end|>\n<|im_start|>assistant\n");
  // No messages: the loop never runs, so no default system message either.
  EXPECT_EQ(*chat->Render({}, true), "<|im_start|>assistant\n");
  EXPECT_EQ(*chat->Render({}, false), "");
}

TEST(ChatTemplateTest, RecognisesSpacingAndQuotingVariants) {
  std::string variant = absl::StrReplaceAll(
      kSmolLm2Template, {{"{% ", "{%- "}, {" %}", " -%}"}, {"'<|im_start|>'", "\"<|im_start|>\""},
                         {"named SmolLM", "named Bob"}, {"{{'", "{{  '"}});
  // '{%-' trims whitespace around tags; with no text between tags the output is the same.
  auto chat = ChatTemplate::FromSource(variant + "\n");
  ASSERT_TRUE(chat.ok()) << chat.status();
  EXPECT_THAT(*chat->Render({{"user", "x"}}, false), HasSubstr("named Bob, trained"));
}

TEST(ChatTemplateTest, PlainChatMlHasNoDefaultSystemMessage) {
  auto chat = ChatTemplate::FromSource(kPlainChatMlTemplate);
  ASSERT_TRUE(chat.ok()) << chat.status();
  EXPECT_EQ(chat->name(), "chatml");
  EXPECT_EQ(*chat->Render({{"user", "Hi"}}, true),
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
}

TEST(ChatTemplateTest, UnknownTemplatesAreErrorsNotGuesses) {
  const std::vector<std::string> unsupported = {
      "",
      // Llama 2
      "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set "
      "system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
      "{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
      "{{ bos_token + '[INST] ' + message['content'].strip() + ' [/INST]' }}{% endfor %}",
      // ChatML with something extra
      std::string(kPlainChatMlTemplate) + "{{ eos_token }}",
      // Zephyr
      "{% for message in messages %}{{ '<|' + message['role'] + '|>\n' + message['content'] + "
      "eos_token }}{% endfor %}",
      "{% for message in messages %",
  };
  for (const std::string& source : unsupported) {
    auto chat = ChatTemplate::FromSource(source);
    ASSERT_FALSE(chat.ok()) << source;
    EXPECT_THAT(std::string(chat.status().message()), HasSubstr("chat template not supported"));
  }
}

}  // namespace
}  // namespace pdserve::tokenizer
