#pragma once
// A LLaMA-family decoder's hyper-parameters and weights, as loaded from a GGUF file or a llama2.c
// checkpoint. Weight matrices are views in their stored type (quantized stays quantized) into
// storage the ModelWeights owns (a memory map or a heap buffer).

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/cpu/matmul.h"

namespace pdserve::model {

struct ModelConfig {
  std::string architecture;  // "llama"
  int n_layers = 0;
  int dim = 0;          // embedding width
  int hidden_dim = 0;   // feed-forward width
  int n_heads = 0;
  int n_kv_heads = 0;   // n_heads % n_kv_heads == 0 (grouped-query attention)
  int head_dim = 0;     // dim / n_heads
  int rotary_dim = 0;   // rotated elements per head (llama.rope.dimension_count; head_dim default)
  int vocab_size = 0;
  int context_length = 0;
  float rope_base = 10000.0f;
  float rms_eps = 1e-5f;
};

// Weights of one decoder layer. Matrices are (out_features, in_features).
struct LayerWeights {
  std::vector<float> attn_norm;  // (dim)
  kernels::WeightMatrix wq;      // (n_heads * head_dim, dim)
  kernels::WeightMatrix wk;      // (n_kv_heads * head_dim, dim)
  kernels::WeightMatrix wv;      // (n_kv_heads * head_dim, dim)
  kernels::WeightMatrix wo;      // (dim, n_heads * head_dim)
  std::vector<float> ffn_norm;   // (dim)
  kernels::WeightMatrix w_gate;  // (hidden_dim, dim)   llama2.c w1, GGUF ffn_gate
  kernels::WeightMatrix w_down;  // (dim, hidden_dim)   llama2.c w2, GGUF ffn_down
  kernels::WeightMatrix w_up;    // (hidden_dim, dim)   llama2.c w3, GGUF ffn_up
};

// OK when every field is positive and consistent: dim == n_heads * head_dim,
// n_heads % n_kv_heads == 0, rotary_dim even and <= head_dim, rope_base and rms_eps finite and
// positive. Errors are InvalidArgument prefixed with `source` (the file) and name the field.
absl::Status ValidateModelConfig(const ModelConfig& config, const std::string& source);

struct ModelWeights {
  ModelConfig config;
  kernels::WeightMatrix token_embedding;  // (vocab_size, dim)
  std::vector<LayerWeights> layers;
  std::vector<float> final_norm;          // (dim)
  kernels::WeightMatrix output;           // (vocab_size, dim); the embedding when tied
  bool output_tied_to_embedding = false;
  size_t weight_bytes = 0;                // bytes of all weight data as stored
  std::shared_ptr<const void> storage;    // keeps the data behind the views alive
};

}  // namespace pdserve::model
