#pragma once
// Loader for GGUF files of architecture `llama` (LLaMA, SmolLM2, TinyStories conversions).
// Matrices stay in their stored type and point into the file's memory map; norm vectors (f32,
// f16 or bf16 in the file) are converted to f32. Every tensor's shape is checked against the
// configuration read from the llama.* metadata.

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/gguf/gguf_file.h"
#include "common/model/model_weights.h"

namespace pdserve::model {

// The hyper-parameters from the llama.* metadata; vocab_size from token_embd.weight's rows.
// Defaults: head_count_kv = head_count, rope.freq_base 10000, layer_norm_rms_epsilon 1e-5,
// rope.dimension_count = head_dim. An architecture other than `llama` is InvalidArgument.
absl::StatusOr<ModelConfig> ReadGgufLlamaConfig(const gguf::GgufFile& file);

// Loads the weights of an opened file; `file` becomes ModelWeights::storage.
absl::StatusOr<ModelWeights> LoadGgufLlama(std::shared_ptr<const gguf::GgufFile> file);

// Opens (memory-maps) `path` and loads it.
absl::StatusOr<ModelWeights> LoadGgufLlama(const std::string& path);

}  // namespace pdserve::model
