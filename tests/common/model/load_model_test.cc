#include "common/model/load_model.h"

#include <cstring>
#include <fstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/common/gguf/test_data.h"

namespace pdserve::model {
namespace {

using ::testing::HasSubstr;

void ExpectSameMatrix(const kernels::WeightMatrix& a, const kernels::WeightMatrix& b,
                      const std::string& what) {
  ASSERT_EQ(a.type, b.type) << what;
  ASSERT_EQ(a.rows, b.rows) << what;
  ASSERT_EQ(a.cols, b.cols) << what;
  ASSERT_EQ(a.row_bytes, b.row_bytes) << what;
  EXPECT_EQ(std::memcmp(a.data, b.data, a.rows * a.row_bytes), 0) << what << " differs";
}

void ExpectSameVector(const std::vector<float>& a, const std::vector<float>& b,
                      const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0) << what << " differs";
}

TEST(LoadModelTest, SniffsBothFormats) {
  EXPECT_EQ(*SniffModelFormat(testing::SharedModelPath("stories260K.gguf")), ModelFormat::kGguf);
  EXPECT_EQ(*SniffModelFormat(testing::SharedModelPath("stories260K.bin")), ModelFormat::kLlama2c);
  EXPECT_TRUE(absl::IsNotFound(SniffModelFormat("/nonexistent/x.gguf").status()));
  EXPECT_TRUE(absl::IsNotFound(LoadModel("/nonexistent/x.gguf").status()));
}

// The README promises the GGUF conversion is bit for bit the llama2.c checkpoint.
TEST(LoadModelTest, Stories260KBinAndGgufAreBitwiseIdentical) {
  absl::StatusOr<ModelWeights> bin = LoadModel(testing::SharedModelPath("stories260K.bin"));
  absl::StatusOr<ModelWeights> gguf = LoadModel(testing::SharedModelPath("stories260K.gguf"));
  ASSERT_TRUE(bin.ok()) << bin.status();
  ASSERT_TRUE(gguf.ok()) << gguf.status();
  const ModelConfig& a = bin->config;
  const ModelConfig& b = gguf->config;
  EXPECT_EQ(a.architecture, b.architecture);
  EXPECT_EQ(a.n_layers, b.n_layers);
  EXPECT_EQ(a.dim, b.dim);
  EXPECT_EQ(a.hidden_dim, b.hidden_dim);
  EXPECT_EQ(a.n_heads, b.n_heads);
  EXPECT_EQ(a.n_kv_heads, b.n_kv_heads);
  EXPECT_EQ(a.head_dim, b.head_dim);
  EXPECT_EQ(a.rotary_dim, b.rotary_dim);
  EXPECT_EQ(a.vocab_size, b.vocab_size);
  EXPECT_EQ(a.context_length, b.context_length);
  EXPECT_EQ(a.rope_base, b.rope_base);
  EXPECT_EQ(a.rms_eps, b.rms_eps);

  ExpectSameMatrix(bin->token_embedding, gguf->token_embedding, "token_embedding");
  ASSERT_EQ(bin->layers.size(), gguf->layers.size());
  for (size_t i = 0; i < bin->layers.size(); ++i) {
    const LayerWeights& x = bin->layers[i];
    const LayerWeights& y = gguf->layers[i];
    const std::string l = "layer " + std::to_string(i) + " ";
    ExpectSameVector(x.attn_norm, y.attn_norm, l + "attn_norm");
    ExpectSameMatrix(x.wq, y.wq, l + "wq");
    ExpectSameMatrix(x.wk, y.wk, l + "wk");
    ExpectSameMatrix(x.wv, y.wv, l + "wv");
    ExpectSameMatrix(x.wo, y.wo, l + "wo");
    ExpectSameVector(x.ffn_norm, y.ffn_norm, l + "ffn_norm");
    ExpectSameMatrix(x.w_gate, y.w_gate, l + "w_gate");
    ExpectSameMatrix(x.w_down, y.w_down, l + "w_down");
    ExpectSameMatrix(x.w_up, y.w_up, l + "w_up");
  }
  ExpectSameVector(bin->final_norm, gguf->final_norm, "final_norm");
  // The .bin shares the classifier with the embedding; the .gguf stores a copy.
  EXPECT_TRUE(bin->output_tied_to_embedding);
  EXPECT_FALSE(gguf->output_tied_to_embedding);
  ExpectSameMatrix(bin->output, gguf->output, "output");
  const size_t embedding_bytes = bin->token_embedding.rows * bin->token_embedding.row_bytes;
  EXPECT_EQ(gguf->weight_bytes, bin->weight_bytes + embedding_bytes);
}

TEST(LoadModelTest, ShortNonGgufFileIsALlama2cError) {
  const std::string path = ::testing::TempDir() + "/short_model.bin";
  {
    std::ofstream out(path, std::ios::binary);
    out << "GGU";
  }
  absl::StatusOr<ModelWeights> w = LoadModel(path);
  ASSERT_FALSE(w.ok());
  EXPECT_THAT(w.status().message(), HasSubstr(path));
  EXPECT_THAT(w.status().message(), HasSubstr("too small for the llama2.c header"));
}

}  // namespace
}  // namespace pdserve::model
