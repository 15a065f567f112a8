#pragma once
// What the router knows of the model: its tokenizer, chat template, context length and identity
// (fingerprint and KV shape, which workers must match). Read from the model file's metadata
// (GGUF) or header (llama2.c); a llama2.c checkpoint's weights are hashed, never used.

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/tokenizer/chat_template.h"
#include "common/tokenizer/tokenizer.h"

namespace pdserve::router {

// What a worker must share with the router's model to join (WorkerRegistry refuses the others).
// Empty or 0 fields are not checked (a registry built for tests without a model).
struct ModelIdentity {
  std::string file_name;    // the model file's name, for messages
  std::string fingerprint;  // model::ModelFingerprint of the model (and tokenizer)
  // The KV shape the model implies: layers, KV heads, elements per head.
  int n_layers = 0;
  int n_kv_heads = 0;
  int head_dim = 0;
};

struct RouterModel {
  std::unique_ptr<tokenizer::Tokenizer> tokenizer;
  // An error (the model has none, or an unsupported one) makes chat requests fail with it.
  absl::StatusOr<tokenizer::ChatTemplate> chat_template =
      absl::FailedPreconditionError("no chat template");
  int64_t context_length = 0;
  std::string name;  // general.name, or the file name
  ModelIdentity identity;
};

// `model_path`: a GGUF file, or a llama2.c .bin checkpoint with `tokenizer_path` (tok512.bin).
// The identity's KV shape comes from the GGUF metadata ({arch}.block_count, .embedding_length,
// .attention.head_count, .attention.head_count_kv (default head_count)) or the llama2.c header;
// errors name the file and the key when they are missing, InvalidArgument when they are not
// positive. The identity's fingerprint is model::ModelFingerprint(model_path, tokenizer_path).
absl::StatusOr<RouterModel> LoadRouterModel(const std::string& model_path,
                                            const std::string& tokenizer_path);

}  // namespace pdserve::router
