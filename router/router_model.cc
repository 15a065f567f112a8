#include "router/router_model.h"

#include <cstdlib>
#include <fstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/gguf/gguf_file.h"

namespace pdserve::router {
namespace {

absl::StatusOr<RouterModel> LoadFromGguf(const std::string& path) {
  absl::StatusOr<std::unique_ptr<gguf::GgufFile>> file = gguf::GgufFile::Open(path);
  if (!file.ok()) return file.status();
  RouterModel model;
  absl::StatusOr<std::string> arch = (*file)->GetString("general.architecture");
  const std::string prefix = arch.ok() ? *arch : "llama";
  absl::StatusOr<int64_t> context = (*file)->GetInt(absl::StrCat(prefix, ".context_length"));
  if (!context.ok()) return context.status();
  if (*context < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": ", prefix, ".context_length is ", *context));
  }
  model.context_length = *context;
  absl::StatusOr<std::unique_ptr<tokenizer::Tokenizer>> tok = tokenizer::LoadGgufTokenizer(**file);
  if (!tok.ok()) return tok.status();
  model.tokenizer = *std::move(tok);
  absl::StatusOr<std::string> source = (*file)->GetString("tokenizer.chat_template");
  model.chat_template = source.ok() ? tokenizer::ChatTemplate::FromSource(*source)
                                    : absl::StatusOr<tokenizer::ChatTemplate>(
                                          absl::FailedPreconditionError(
                                              absl::StrCat(path, " has no chat template")));
  absl::StatusOr<std::string> name = (*file)->GetString("general.name");
  model.name = name.ok() ? *name : path.substr(path.find_last_of('/') + 1);
  return model;
}

// llama2.c checkpoint header: 7 int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads,
// vocab_size (negative: unshared classifier), seq_len).
absl::StatusOr<RouterModel> LoadFromLlama2c(const std::string& path,
                                            const std::string& tokenizer_path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  int32_t header[7];
  if (!in.read(reinterpret_cast<char*>(header), sizeof(header))) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": shorter than a llama2.c header (28 bytes)"));
  }
  const int32_t vocab_size = std::abs(header[5]);
  const int32_t seq_len = header[6];
  if (vocab_size < 1 || seq_len < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": llama2.c header has vocab_size ", header[5], " and seq_len ", seq_len));
  }
  if (tokenizer_path.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, " is a llama2.c checkpoint: it needs a tokenizer file (--tokenizer)"));
  }
  RouterModel model;
  model.context_length = seq_len;
  absl::StatusOr<std::unique_ptr<tokenizer::Tokenizer>> tok =
      tokenizer::LoadLlama2cTokenizer(tokenizer_path, vocab_size);
  if (!tok.ok()) return tok.status();
  model.tokenizer = *std::move(tok);
  model.chat_template = absl::FailedPreconditionError(
      "llama2.c checkpoints have no chat template: use a plain prompt");
  model.name = path.substr(path.find_last_of('/') + 1);
  return model;
}

}  // namespace

absl::StatusOr<RouterModel> LoadRouterModel(const std::string& model_path,
                                            const std::string& tokenizer_path) {
  std::ifstream in(model_path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open model file ", model_path));
  char magic[4] = {};
  in.read(magic, 4);
  if (in.gcount() == 4 && std::string(magic, 4) == "GGUF") return LoadFromGguf(model_path);
  return LoadFromLlama2c(model_path, tokenizer_path);
}

}  // namespace pdserve::router
