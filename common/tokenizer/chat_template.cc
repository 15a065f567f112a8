#include "common/tokenizer/chat_template.h"

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"

namespace pdserve::tokenizer {
namespace {

// A piece of template source: text outside tags, or one {{ }} / {% %} tag.
struct Segment {
  bool is_tag = false;
  bool is_block = false;    // {% %}
  bool trim_before = false;  // {%- / {{-
  bool trim_after = false;   // -%} / -}}
  std::string text;          // tags: the canonical body
};

// Splits `source` into text and tags. A tag body loses its whitespace and has every string
// literal decoded and rewritten in single quotes ('\\' and '\'' escaped), so that recognising a
// template does not depend on spacing or quoting. Comments are dropped. False when a tag or a
// literal is not closed.
bool Lex(absl::string_view source, std::vector<Segment>* segments) {
  size_t i = 0;
  std::string text;
  auto flush_text = [&] {
    if (!text.empty()) segments->push_back(Segment{false, false, false, false, std::move(text)});
    text.clear();
  };
  while (i < source.size()) {
    const bool tag_start = source[i] == '{' && i + 1 < source.size() &&
                           (source[i + 1] == '{' || source[i + 1] == '%' || source[i + 1] == '#');
    if (!tag_start) {
      text.push_back(source[i++]);
      continue;
    }
    flush_text();
    const char kind = source[i + 1];
    if (kind == '#') {
      const size_t close = source.find("#}", i + 2);
      if (close == absl::string_view::npos) return false;
      i = close + 2;
      continue;
    }
    Segment tag;
    tag.is_tag = true;
    tag.is_block = kind == '%';
    const char closer = kind == '{' ? '}' : '%';
    i += 2;
    if (i < source.size() && (source[i] == '-' || source[i] == '+')) {
      tag.trim_before = source[i] == '-';
      ++i;
    }
    bool closed = false;
    while (i < source.size()) {
      const char c = source[i];
      const bool marker = (c == '-' || c == '+') && i + 2 < source.size() &&
                          source[i + 1] == closer && source[i + 2] == '}';
      if (marker) {
        tag.trim_after = c == '-';
        i += 3;
        closed = true;
        break;
      }
      if (c == closer && i + 1 < source.size() && source[i + 1] == '}') {
        i += 2;
        closed = true;
        break;
      }
      if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
        ++i;
        continue;
      }
      if (c != '\'' && c != '"') {
        tag.text.push_back(c);
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
      absl::StrAppend(&tag.text, "'",
                      absl::StrReplaceAll(literal, {{"\\", "\\\\"}, {"'", "\\'"}}), "'");
    }
    if (!closed) return false;
    segments->push_back(std::move(tag));
  }
  flush_text();
  return true;
}

// The template with Jinja's whitespace control applied to the text between tags, as
// transformers renders it (trim_blocks and lstrip_blocks on, plus '-' markers), then every tag
// written back as {{body}} or {%body%}. Two templates with the same canonical form render the
// same output.
bool Canonicalize(absl::string_view source, std::string* out) {
  std::vector<Segment> segments;
  if (!Lex(source, &segments)) return false;
  for (size_t k = 0; k < segments.size(); ++k) {
    Segment& segment = segments[k];
    if (segment.is_tag) {
      absl::StrAppend(out, segment.is_block ? "{%" : "{{", segment.text,
                      segment.is_block ? "%}" : "}}");
      continue;
    }
    std::string& text = segment.text;
    const Segment* before = k > 0 ? &segments[k - 1] : nullptr;
    const Segment* after = k + 1 < segments.size() ? &segments[k + 1] : nullptr;
    // lstrip_blocks: spaces and tabs between a line start and a block tag (decided on the
    // source text, before trim_blocks takes a newline away).
    const size_t last_non_blank = text.find_last_not_of(" \t");
    const bool blank_line_start_before_block =
        after != nullptr && after->is_block &&
        (last_non_blank == std::string::npos ? k == 0 : text[last_non_blank] == '\n');
    if (before != nullptr && before->trim_after) {
      text.erase(0, text.find_first_not_of(" \t\r\n"));
    } else if (before != nullptr && before->is_block && !text.empty() && text[0] == '\n') {
      text.erase(0, 1);  // trim_blocks
    }
    if (after != nullptr && after->trim_before) {
      const size_t last = text.find_last_not_of(" \t\r\n");
      text.erase(last == std::string::npos ? 0 : last + 1);
    } else if (blank_line_start_before_block) {
      const size_t last = text.find_last_not_of(" \t");
      text.erase(last == std::string::npos ? 0 : last + 1);
    }
    out->append(text);
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
  if (template_source.empty()) {
    return absl::UnimplementedError("chat template not supported: the model has no chat template");
  }
  // Jinja drops one trailing newline of a template (keep_trailing_newline is off).
  absl::string_view source = template_source;
  if (absl::EndsWith(source, "\n")) source.remove_suffix(1);
  std::string canonical;
  if (!Canonicalize(source, &canonical)) return unsupported("unterminated tag or string");

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
