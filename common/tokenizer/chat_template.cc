#include "common/tokenizer/chat_template.h"

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"

namespace pdserve::tokenizer {
namespace {

// A canonical form of a Jinja template, so that recognising one does not depend on spacing or
// quoting: text outside tags is kept as is; inside {{ }} and {% %} whitespace is dropped and
// every string literal is decoded and rewritten in single quotes ('\\' and '\'' escaped).
// Returns false when a tag or literal is not closed.
bool Canonicalize(absl::string_view source, std::string* out) {
  size_t i = 0;
  while (i < source.size()) {
    const bool tag_start = source[i] == '{' && i + 1 < source.size() &&
                           (source[i + 1] == '{' || source[i + 1] == '%' || source[i + 1] == '#');
    if (!tag_start) {
      out->push_back(source[i++]);
      continue;
    }
    const char kind = source[i + 1];
    if (kind == '#') {  // a comment renders nothing
      const size_t close = source.find("#}", i + 2);
      if (close == absl::string_view::npos) return false;
      i = close + 2;
      continue;
    }
    const char closer = kind == '{' ? '}' : '%';
    out->append(source.data() + i, 2);
    i += 2;
    bool closed = false;
    while (i < source.size()) {
      const char c = source[i];
      if (c == closer && i + 1 < source.size() && source[i + 1] == '}') {
        out->push_back(closer);
        out->push_back('}');
        i += 2;
        closed = true;
        break;
      }
      if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
        ++i;
        continue;
      }
      if (c != '\'' && c != '"') {
        out->push_back(c);
        ++i;
        continue;
      }
      const char quote = c;
      std::string literal;
      ++i;
      bool literal_closed = false;
      while (i < source.size()) {
        char d = source[i++];
        if (d == quote) {
          literal_closed = true;
          break;
        }
        if (d == '\\' && i < source.size()) {
          const char e = source[i++];
          switch (e) {
            case 'n': d = '\n'; break;
            case 't': d = '\t'; break;
            case 'r': d = '\r'; break;
            default: d = e; break;  // \\ \' \"
          }
        }
        literal.push_back(d);
      }
      if (!literal_closed) return false;
      absl::StrAppend(out, "'", absl::StrReplaceAll(literal, {{"\\", "\\\\"}, {"'", "\\'"}}),
                      "'");
    }
    if (!closed) return false;
  }
  return true;
}

std::string Unescape(absl::string_view canonical_literal) {
  std::string out;
  for (size_t i = 0; i < canonical_literal.size(); ++i) {
    if (canonical_literal[i] == '\\' && i + 1 < canonical_literal.size()) ++i;
    out.push_back(canonical_literal[i]);
  }
  return out;
}

// ChatML, optionally with a default system message before the first message when that is not
// a system message (SmolLM2's template), in canonical form.
constexpr absl::string_view kChatMlWithDefaultSystemPrefix =
    "{%formessageinmessages%}{%ifloop.firstandmessages[0]['role']!='system'%}"
    "{{'<|im_start|>system\n";
constexpr absl::string_view kChatMlWithDefaultSystemSuffix =
    "<|im_end|>\n'}}{%endif%}"
    "{{'<|im_start|>'+message['role']+'\n'+message['content']+'<|im_end|>'+'\n'}}{%endfor%}"
    "{%ifadd_generation_prompt%}{{'<|im_start|>assistant\n'}}{%endif%}";
// The plain ChatML template (Hugging Face's former default).
constexpr absl::string_view kChatMlPlain =
    "{%formessageinmessages%}"
    "{{'<|im_start|>'+message['role']+'\n'+message['content']+'<|im_end|>'+'\n'}}{%endfor%}"
    "{%ifadd_generation_prompt%}{{'<|im_start|>assistant\n'}}{%endif%}";

}  // namespace

absl::StatusOr<ChatTemplate> ChatTemplate::FromSource(absl::string_view template_source) {
  auto unsupported = [&](absl::string_view why) {
    std::string excerpt(template_source.substr(0, 120));
    if (template_source.size() > 120) excerpt += "...";
    return absl::UnimplementedError(
        absl::StrCat("chat template not supported: ", why, ": \"",
                     absl::StrReplaceAll(excerpt, {{"\n", "\\n"}}), "\""));
  };
  if (template_source.empty()) return unsupported("the model has no chat template");
  std::string canonical;
  if (!Canonicalize(template_source, &canonical)) return unsupported("unterminated tag or string");
  while (!canonical.empty() && (canonical.back() == '\n' || canonical.back() == ' ')) {
    canonical.pop_back();
  }

  ChatTemplate result;
  if (canonical == kChatMlPlain) {
    result.name_ = "chatml";
    return result;
  }
  if (canonical.size() > kChatMlWithDefaultSystemPrefix.size() +
                             kChatMlWithDefaultSystemSuffix.size() &&
      absl::StartsWith(canonical, kChatMlWithDefaultSystemPrefix) &&
      absl::EndsWith(canonical, kChatMlWithDefaultSystemSuffix)) {
    const absl::string_view literal = absl::string_view(canonical).substr(
        kChatMlWithDefaultSystemPrefix.size(), canonical.size() -
                                                   kChatMlWithDefaultSystemPrefix.size() -
                                                   kChatMlWithDefaultSystemSuffix.size());
    // The message must be the rest of one literal: no unescaped quote may end it early.
    for (size_t i = 0; i < literal.size(); ++i) {
      if (literal[i] == '\\') {
        ++i;
      } else if (literal[i] == '\'') {
        return unsupported("unrecognised ChatML variant");
      }
    }
    result.name_ = "chatml-default-system";
    result.default_system_message_ = Unescape(literal);
    return result;
  }
  return unsupported("not a recognised template");
}

absl::StatusOr<std::string> ChatTemplate::Render(const std::vector<ChatMessage>& messages,
                                                 bool add_generation_prompt) const {
  std::string prompt;
  for (size_t i = 0; i < messages.size(); ++i) {
    if (i == 0 && messages[0].role != "system" && !default_system_message_.empty()) {
      absl::StrAppend(&prompt, "<|im_start|>system\n", default_system_message_, "<|im_end|>\n");
    }
    absl::StrAppend(&prompt, "<|im_start|>", messages[i].role, "\n", messages[i].content,
                    "<|im_end|>\n");
  }
  if (add_generation_prompt) prompt += "<|im_start|>assistant\n";
  return prompt;
}

}  // namespace pdserve::tokenizer
