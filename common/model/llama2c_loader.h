#pragma once
// Loader for llama2.c checkpoints in the legacy version-0 `.bin` format: a header of 7 int32
// (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len; a negative vocab_size
// means a separate classifier is stored after the RoPE tables), then f32 tensors in a fixed
// order. The legacy RoPE tables are skipped (the forward pass computes RoPE itself).

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "common/model/model_weights.h"

namespace pdserve::model {

// Memory-maps `path` and loads it. The file size must equal what the header implies.
absl::StatusOr<ModelWeights> LoadLlama2c(const std::string& path);

// Loads from bytes in memory. The views point into `bytes`, which `owner` must keep alive; it
// becomes ModelWeights::storage. `bytes` should be 4-byte aligned (the weights are f32).
absl::StatusOr<ModelWeights> ParseLlama2c(absl::Span<const uint8_t> bytes,
                                          std::shared_ptr<const void> owner,
                                          const std::string& display_name);

}  // namespace pdserve::model
