#include "router/router_model.h"

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/gguf/gguf_file.h"
#include "common/model/model_fingerprint.h"
#include "common/model/model_format.h"

namespace pdserve::router {
namespace {

std::string FileName(const std::string& path) { return path.substr(path.find_last_of('/') + 1); }

// Fills identity's KV shape; InvalidArgument naming the file unless every value is positive
// and dim is a multiple of n_heads (as the loaders require).
absl::Status SetKvShape(const std::string& path, int64_t n_layers, int64_t dim, int64_t n_heads,
                        int64_t n_kv_heads, ModelIdentity* identity) {
  if (n_layers < 1 || dim < 1 || n_heads < 1 || n_kv_heads < 1 || dim % n_heads != 0 ||
      n_layers > INT32_MAX || dim > INT32_MAX || n_kv_heads > INT32_MAX) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": no usable KV shape (layers ", n_layers, ", dim ", dim, ", heads ", n_heads,
        ", kv_heads ", n_kv_heads, ")"));
  }
  identity->n_layers = static_cast<int>(n_layers);
  identity->n_kv_heads = static_cast<int>(n_kv_heads);
  identity->head_dim = static_cast<int>(dim / n_heads);
  return absl::OkStatus();
}

absl::Status ReadGgufKvShape(const gguf::GgufFile& file, const std::string& prefix,
                             ModelIdentity* identity) {
  absl::StatusOr<int64_t> n_layers = file.GetInt(absl::StrCat(prefix, ".block_count"));
  if (!n_layers.ok()) return n_layers.status();
  absl::StatusOr<int64_t> dim = file.GetInt(absl::StrCat(prefix, ".embedding_length"));
  if (!dim.ok()) return dim.status();
  absl::StatusOr<int64_t> n_heads = file.GetInt(absl::StrCat(prefix, ".attention.head_count"));
  if (!n_heads.ok()) return n_heads.status();
  absl::StatusOr<int64_t> n_kv_heads =
      file.GetInt(absl::StrCat(prefix, ".attention.head_count_kv"));
  if (!n_kv_heads.ok() && !absl::IsNotFound(n_kv_heads.status())) return n_kv_heads.status();
  return SetKvShape(file.display_name(), *n_layers, *dim, *n_heads,
                    n_kv_heads.ok() ? *n_kv_heads : *n_heads, identity);
}

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
  model.name = name.ok() ? *name : FileName(path);
  if (absl::Status s = ReadGgufKvShape(**file, prefix, &model.identity); !s.ok()) return s;
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
  model.name = FileName(path);
  if (absl::Status s = SetKvShape(path, /*n_layers=*/header[2], /*dim=*/header[0],
                                  /*n_heads=*/header[3], /*n_kv_heads=*/header[4],
                                  &model.identity);
      !s.ok()) {
    return s;
  }
  return model;
}

}  // namespace

absl::StatusOr<RouterModel> LoadRouterModel(const std::string& model_path,
                                            const std::string& tokenizer_path) {
  absl::StatusOr<model::ModelFormat> format = model::SniffModelFormat(model_path);
  if (!format.ok()) return format.status();
  absl::StatusOr<RouterModel> loaded = *format == model::ModelFormat::kGguf
                                           ? LoadFromGguf(model_path)
                                           : LoadFromLlama2c(model_path, tokenizer_path);
  if (!loaded.ok()) return loaded.status();
  absl::StatusOr<std::string> fingerprint = model::ModelFingerprint(model_path, tokenizer_path);
  if (!fingerprint.ok()) return fingerprint.status();
  loaded->identity.fingerprint = *std::move(fingerprint);
  loaded->identity.file_name = FileName(model_path);
  return loaded;
}

}  // namespace pdserve::router
