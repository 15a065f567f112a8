#pragma once
// What the router knows of the model: its tokenizer, chat template and context length. Read
// from the model file's metadata (GGUF) or header (llama2.c); never its weights.

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/tokenizer/chat_template.h"
#include "common/tokenizer/tokenizer.h"

namespace pdserve::router {

struct RouterModel {
  std::unique_ptr<tokenizer::Tokenizer> tokenizer;
  // An error (the model has none, or an unsupported one) makes chat requests fail with it.
  absl::StatusOr<tokenizer::ChatTemplate> chat_template =
      absl::FailedPreconditionError("no chat template");
  int64_t context_length = 0;
  std::string name;  // general.name, or the file name
};

// `model_path`: a GGUF file, or a llama2.c .bin checkpoint with `tokenizer_path` (tok512.bin).
absl::StatusOr<RouterModel> LoadRouterModel(const std::string& model_path,
                                            const std::string& tokenizer_path);

}  // namespace pdserve::router
