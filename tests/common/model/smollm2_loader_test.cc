// SmolLM2-135M-Instruct (Q4_1 GGUF, fetched by the `smollm2` ctest fixture): a realistic file
// with quantized matrices, f32 norms and a tied output. Fails (never skips) when the file is
// missing.
#include <cstring>

#include "common/gguf/gguf_file.h"
#include "common/model/load_model.h"
#include "gtest/gtest.h"
#include "tests/common/gguf/test_data.h"

namespace pdserve::model {
namespace {

TEST(SmolLm2LoaderTest, ConfigAndTypes) {
  absl::StatusOr<ModelWeights> w = LoadModel(testing::SmolLm2Path());
  ASSERT_TRUE(w.ok()) << w.status();
  const ModelConfig& c = w->config;
  EXPECT_EQ(c.architecture, "llama");
  EXPECT_EQ(c.n_layers, 30);
  EXPECT_EQ(c.dim, 576);
  EXPECT_EQ(c.n_heads, 9);
  EXPECT_EQ(c.n_kv_heads, 3);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.rotary_dim, 64);
  EXPECT_EQ(c.hidden_dim, 1536);
  EXPECT_EQ(c.vocab_size, 49152);
  EXPECT_EQ(c.context_length, 8192);
  EXPECT_FLOAT_EQ(c.rope_base, 100000.0f);
  EXPECT_FLOAT_EQ(c.rms_eps, 1e-5f);
  EXPECT_TRUE(w->output_tied_to_embedding);
  EXPECT_EQ(w->output.data, w->token_embedding.data);
  EXPECT_EQ(w->token_embedding.type, kernels::TensorType::kQ8_0);
  EXPECT_EQ(w->token_embedding.row_bytes, 576u / 32 * 34);
  ASSERT_EQ(w->layers.size(), 30u);
  for (const LayerWeights& l : w->layers) {
    EXPECT_EQ(l.wq.type, kernels::TensorType::kQ4_1);
    EXPECT_EQ(l.wk.rows, 192);
    EXPECT_EQ(l.w_down.cols, 1536);
    EXPECT_EQ(l.w_down.row_bytes, 1536u / 32 * 20);
    EXPECT_EQ(l.attn_norm.size(), 576u);
    EXPECT_EQ(l.ffn_norm.size(), 576u);
  }
  // Every tensor in the file is a weight the model uses.
  absl::StatusOr<std::unique_ptr<gguf::GgufFile>> file = gguf::GgufFile::Open(testing::SmolLm2Path());
  ASSERT_TRUE(file.ok()) << file.status();
  size_t total = 0;
  for (const gguf::TensorInfo& t : (*file)->tensors()) total += t.n_bytes;
  EXPECT_EQ(w->weight_bytes, total);
  EXPECT_EQ((*file)->tensors().size(), 2u + 30u * 9u);
}

}  // namespace
}  // namespace pdserve::model
