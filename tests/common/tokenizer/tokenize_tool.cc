// pdserve-tokenize: prints the token ids of a prompt as a JSON array on one line.
//
//   pdserve-tokenize --model model.gguf --prompt TEXT [--no-bos]
//   pdserve-tokenize --model model.gguf --chat-user TEXT [--chat-system TEXT] [--no-bos]
//   pdserve-tokenize --model stories260K.bin --tokenizer tok512.bin --prompt TEXT
//
// --parse-special encodes the text of special tokens in --prompt as those tokens.
// A chat prompt is rendered with the model's chat template (tokenizer.chat_template) and
// encoded with its special tokens parsed. Errors go to stderr with a non-zero exit.

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/gguf/gguf_file.h"
#include "common/tokenizer/chat_template.h"
#include "common/tokenizer/tokenizer.h"

namespace {

using pdserve::tokenizer::ChatMessage;
using pdserve::tokenizer::ChatTemplate;
using pdserve::tokenizer::EncodeOptions;
using pdserve::tokenizer::Tokenizer;

struct Args {
  std::string model;
  std::string tokenizer;  // llama2.c tokenizer file: --model is then a llama2.c checkpoint
  std::optional<std::string> prompt;
  std::optional<std::string> chat_user;
  std::optional<std::string> chat_system;
  bool add_bos = true;
  bool parse_special = false;
};

constexpr char kUsage[] =
    "usage: pdserve-tokenize --model PATH [--tokenizer tok512.bin] "
    "(--prompt TEXT [--parse-special] | --chat-user TEXT [--chat-system TEXT]) [--no-bos]";

absl::StatusOr<Args> ParseArgs(int argc, char** argv) {
  Args args;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    auto value = [&]() -> absl::StatusOr<std::string> {
      if (i + 1 >= argc) return absl::InvalidArgumentError(flag + " needs a value");
      return std::string(argv[++i]);
    };
    absl::StatusOr<std::string> v;
    if (flag == "--no-bos") {
      args.add_bos = false;
      continue;
    } else if (flag == "--parse-special") {
      args.parse_special = true;
      continue;
    } else if (flag == "--help" || flag == "-h") {
      return absl::InvalidArgumentError(kUsage);
    } else if (flag == "--model" || flag == "--tokenizer" || flag == "--prompt" ||
               flag == "--chat-user" || flag == "--chat-system") {
      v = value();
      if (!v.ok()) return v.status();
    } else {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag '", flag, "'\n", kUsage));
    }
    if (flag == "--model") args.model = *v;
    if (flag == "--tokenizer") args.tokenizer = *v;
    if (flag == "--prompt") args.prompt = *v;
    if (flag == "--chat-user") args.chat_user = *v;
    if (flag == "--chat-system") args.chat_system = *v;
  }
  if (args.model.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("--model is required\n", kUsage));
  }
  if (args.prompt.has_value() == args.chat_user.has_value()) {
    return absl::InvalidArgumentError(
        absl::StrCat("give exactly one of --prompt and --chat-user\n", kUsage));
  }
  if (args.chat_system.has_value() && !args.chat_user.has_value()) {
    return absl::InvalidArgumentError("--chat-system needs --chat-user");
  }
  return args;
}

// vocab_size from a llama2.c checkpoint header (7 int32; a negative vocab_size means the
// classifier is not shared, its magnitude is the size).
absl::StatusOr<int32_t> Llama2cVocabSize(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open model ", path));
  int32_t header[7];
  if (!in.read(reinterpret_cast<char*>(header), sizeof header)) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": truncated llama2.c header"));
  }
  const int32_t vocab_size = header[5] < 0 ? -header[5] : header[5];
  if (vocab_size <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": bad vocab_size ", header[5]));
  }
  return vocab_size;
}

absl::Status Run(const Args& args) {
  std::unique_ptr<Tokenizer> tokenizer;
  std::string chat_template_source;
  if (!args.tokenizer.empty()) {
    absl::StatusOr<int32_t> vocab_size = Llama2cVocabSize(args.model);
    if (!vocab_size.ok()) return vocab_size.status();
    auto loaded = pdserve::tokenizer::LoadLlama2cTokenizer(args.tokenizer, *vocab_size);
    if (!loaded.ok()) return loaded.status();
    tokenizer = *std::move(loaded);
  } else {
    auto file = pdserve::gguf::GgufFile::Open(args.model);
    if (!file.ok()) return file.status();
    auto loaded = pdserve::tokenizer::LoadGgufTokenizer(**file);
    if (!loaded.ok()) return loaded.status();
    tokenizer = *std::move(loaded);
    if ((*file)->Find("tokenizer.chat_template") != nullptr) {
      auto source = (*file)->GetString("tokenizer.chat_template");
      if (!source.ok()) return source.status();
      chat_template_source = *source;
    }
  }

  EncodeOptions options;
  options.add_bos = args.add_bos;
  std::string text;
  if (args.prompt.has_value()) {
    text = *args.prompt;
    options.parse_special = args.parse_special;
  } else {
    auto chat_template = ChatTemplate::FromSource(chat_template_source);
    if (!chat_template.ok()) return chat_template.status();
    std::vector<ChatMessage> messages;
    if (args.chat_system.has_value()) messages.push_back({"system", *args.chat_system});
    messages.push_back({"user", *args.chat_user});
    auto rendered = chat_template->Render(messages, /*add_generation_prompt=*/true);
    if (!rendered.ok()) return rendered.status();
    text = *std::move(rendered);
    options.parse_special = true;
  }
  auto ids = tokenizer->Encode(text, options);
  if (!ids.ok()) return ids.status();
  std::cout << "[" << absl::StrJoin(*ids, ", ") << "]\n";
  return absl::OkStatus();
}

}  // namespace

int main(int argc, char** argv) {
  absl::StatusOr<Args> args = ParseArgs(argc, argv);
  if (!args.ok()) {
    std::cerr << "pdserve-tokenize: " << args.status().message() << "\n";
    return 2;
  }
  if (absl::Status status = Run(*args); !status.ok()) {
    std::cerr << "pdserve-tokenize: " << status << "\n";
    return 1;
  }
  return 0;
}
