#include "common/model/llama2c_loader.h"

#include <cstring>
#include <filesystem>
#include <fstream>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/common/gguf/test_data.h"

namespace pdserve::model {
namespace {

using ::testing::HasSubstr;

// A llama2.c checkpoint in memory: header, then every float equal to its index (so a view's
// first element tells where it points).
std::vector<uint8_t> MakeCheckpoint(int32_t dim, int32_t hidden, int32_t layers, int32_t heads,
                                    int32_t kv_heads, int32_t vocab, int32_t seq) {
  const int64_t head = dim / heads, V = vocab < 0 ? -vocab : vocab;
  int64_t floats = V * dim + layers * dim + layers * dim * dim + 2 * layers * kv_heads * head * dim +
                   layers * dim * dim + layers * dim + 3 * layers * hidden * dim + dim +
                   seq * head + (vocab < 0 ? V * dim : 0);
  std::vector<uint8_t> bytes(28 + floats * 4);
  const int32_t header[7] = {dim, hidden, layers, heads, kv_heads, vocab, seq};
  std::memcpy(bytes.data(), header, 28);
  for (int64_t i = 0; i < floats; ++i) {
    const float f = static_cast<float>(i);
    std::memcpy(bytes.data() + 28 + 4 * i, &f, 4);
  }
  return bytes;
}

float First(const kernels::WeightMatrix& m) {
  float f;
  std::memcpy(&f, m.data, 4);
  return f;
}

TEST(Llama2cLoaderTest, Stories260KHeaderMatchesReadme) {
  absl::StatusOr<ModelWeights> w = LoadLlama2c(testing::SharedModelPath("stories260K.bin"));
  ASSERT_TRUE(w.ok()) << w.status();
  const ModelConfig& c = w->config;
  EXPECT_EQ(c.architecture, "llama");
  EXPECT_EQ(c.dim, 64);
  EXPECT_EQ(c.n_layers, 5);
  EXPECT_EQ(c.n_heads, 8);
  EXPECT_EQ(c.n_kv_heads, 4);
  EXPECT_EQ(c.head_dim, 8);
  EXPECT_EQ(c.rotary_dim, 8);
  EXPECT_EQ(c.vocab_size, 512);
  EXPECT_EQ(c.hidden_dim, 172);
  EXPECT_EQ(c.context_length, 512);
  EXPECT_FLOAT_EQ(c.rope_base, 10000.0f);
  EXPECT_FLOAT_EQ(c.rms_eps, 1e-5f);
  EXPECT_TRUE(w->output_tied_to_embedding);
  EXPECT_EQ(w->output.data, w->token_embedding.data);
  ASSERT_EQ(w->layers.size(), 5u);
  EXPECT_EQ(w->layers[0].wk.rows, 32);
  EXPECT_EQ(w->layers[0].wk.cols, 64);
  EXPECT_EQ(w->layers[0].w_down.rows, 64);
  EXPECT_EQ(w->layers[0].w_down.cols, 172);
  EXPECT_EQ(w->layers[0].w_down.row_bytes, 172u * 4);
  // The file is the header, the weights and 512 x 8 floats of RoPE tables.
  const size_t file_bytes = std::filesystem::file_size(testing::SharedModelPath("stories260K.bin"));
  EXPECT_EQ(w->weight_bytes, file_bytes - 28 - 512 * 8 * 4);
  EXPECT_NE(w->storage, nullptr);
}

TEST(Llama2cLoaderTest, TensorOrderFollowsTheFormat) {
  // dim 8, hidden 12, 2 layers, 2 heads (head 4), 1 kv head, vocab 10, seq 6.
  std::vector<uint8_t> bytes = MakeCheckpoint(8, 12, 2, 2, 1, 10, 6);
  absl::StatusOr<ModelWeights> w = ParseLlama2c(bytes, nullptr, "mem.bin");
  ASSERT_TRUE(w.ok()) << w.status();
  float at = 0;
  EXPECT_EQ(First(w->token_embedding), at);
  at += 10 * 8;
  EXPECT_EQ(w->layers[0].attn_norm[0], at);
  EXPECT_EQ(w->layers[1].attn_norm[0], at + 8);
  at += 2 * 8;
  EXPECT_EQ(First(w->layers[0].wq), at);
  EXPECT_EQ(First(w->layers[1].wq), at + 64);
  at += 2 * 64;
  EXPECT_EQ(First(w->layers[0].wk), at);
  at += 2 * 32;
  EXPECT_EQ(First(w->layers[0].wv), at);
  at += 2 * 32;
  EXPECT_EQ(First(w->layers[0].wo), at);
  at += 2 * 64;
  EXPECT_EQ(w->layers[0].ffn_norm[0], at);
  at += 2 * 8;
  EXPECT_EQ(First(w->layers[0].w_gate), at);
  at += 2 * 96;
  EXPECT_EQ(First(w->layers[0].w_down), at);
  EXPECT_EQ(w->layers[0].w_down.rows, 8);
  EXPECT_EQ(w->layers[0].w_down.cols, 12);
  at += 2 * 96;
  EXPECT_EQ(First(w->layers[0].w_up), at);
  EXPECT_EQ(First(w->layers[1].w_up), at + 96);
  at += 2 * 96;
  EXPECT_EQ(w->final_norm[0], at);
  EXPECT_EQ(w->final_norm[7], at + 7);
  EXPECT_TRUE(w->output_tied_to_embedding);
}

TEST(Llama2cLoaderTest, NegativeVocabMeansSeparateClassifierAfterRopeTables) {
  std::vector<uint8_t> bytes = MakeCheckpoint(8, 12, 1, 2, 2, -10, 6);
  absl::StatusOr<ModelWeights> w = ParseLlama2c(bytes, nullptr, "mem.bin");
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(w->config.vocab_size, 10);
  EXPECT_FALSE(w->output_tied_to_embedding);
  const int64_t total_floats = (bytes.size() - 28) / 4;
  EXPECT_EQ(First(w->output), static_cast<float>(total_floats - 10 * 8));
  EXPECT_EQ(w->output.rows, 10);
  EXPECT_EQ(w->weight_bytes, bytes.size() - 28 - 6 * 4 * 4);
}

TEST(Llama2cLoaderTest, EveryTruncationIsAnError) {
  std::vector<uint8_t> bytes = MakeCheckpoint(8, 12, 1, 2, 1, 10, 6);
  for (size_t n = 0; n < bytes.size(); ++n) {
    absl::StatusOr<ModelWeights> w =
        ParseLlama2c(absl::MakeConstSpan(bytes.data(), n), nullptr, "cut.bin");
    ASSERT_FALSE(w.ok()) << "prefix of " << n << " bytes";
    EXPECT_THAT(w.status().message(), HasSubstr("cut.bin"));
  }
  absl::StatusOr<ModelWeights> w =
      ParseLlama2c(absl::MakeConstSpan(bytes.data(), bytes.size() - 1), nullptr, "cut.bin");
  EXPECT_THAT(w.status().message(), HasSubstr("truncated"));
}

TEST(Llama2cLoaderTest, TruncatedRealFileIsAnError) {
  const std::string path = testing::SharedModelPath("stories260K.bin");
  std::ifstream in(path, std::ios::binary);
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_GT(bytes.size(), 1000u);
  for (size_t n : {size_t{27}, size_t{28}, bytes.size() / 2, bytes.size() - 4}) {
    absl::StatusOr<ModelWeights> w =
        ParseLlama2c(absl::MakeConstSpan(bytes.data(), n), nullptr, "stories260K.bin");
    EXPECT_FALSE(w.ok()) << n;
  }
}

TEST(Llama2cLoaderTest, TrailingBytesAreAnError) {
  std::vector<uint8_t> bytes = MakeCheckpoint(8, 12, 1, 2, 1, 10, 6);
  bytes.resize(bytes.size() + 4);
  absl::StatusOr<ModelWeights> w = ParseLlama2c(bytes, nullptr, "long.bin");
  ASSERT_FALSE(w.ok());
  EXPECT_THAT(w.status().message(), HasSubstr("trailing"));
}

TEST(Llama2cLoaderTest, InvalidHeadersAreErrors) {
  struct Case {
    int32_t header[7];
    const char* message;
  };
  const Case cases[] = {
      {{0, 12, 1, 2, 1, 10, 6}, "dim is 0"},
      {{8, 12, 1, 3, 1, 10, 6}, "is not n_heads"},
      {{8, 12, 1, 2, 0, 10, 6}, "n_kv_heads is 0"},
      {{8, 12, 1, 4, 3, 10, 6}, "not a multiple of n_kv_heads"},
      {{8, 12, -1, 2, 1, 10, 6}, "n_layers is -1"},
      {{8, 12, 1, 2, 1, 0, 6}, "vocab_size is 0"},
      {{8, 12, 1, 8, 1, 10, 6}, "rotary_dim 1 must be even"},
      {{1 << 30, 1 << 30, 1 << 30, 2, 1, 1 << 30, 6}, "truncated"},  // no overflow
  };
  for (const Case& c : cases) {
    std::vector<uint8_t> bytes(28 + 4096);
    std::memcpy(bytes.data(), c.header, 28);
    absl::StatusOr<ModelWeights> w = ParseLlama2c(bytes, nullptr, "bad.bin");
    ASSERT_FALSE(w.ok()) << c.message;
    EXPECT_THAT(w.status().message(), HasSubstr(c.message));
    EXPECT_THAT(w.status().message(), HasSubstr("bad.bin"));
  }
}

TEST(Llama2cLoaderTest, VersionedCheckpointIsRejectedClearly) {
  std::vector<uint8_t> bytes(256);
  const uint32_t magic = 0x616b3432;
  std::memcpy(bytes.data(), &magic, 4);
  absl::StatusOr<ModelWeights> w = ParseLlama2c(bytes, nullptr, "v1.bin");
  ASSERT_FALSE(w.ok());
  EXPECT_THAT(w.status().message(), HasSubstr("legacy version 0"));
}

TEST(Llama2cLoaderTest, MissingFileIsNotFound) {
  absl::StatusOr<ModelWeights> w = LoadLlama2c("/nonexistent/model.bin");
  EXPECT_TRUE(absl::IsNotFound(w.status())) << w.status();
}

}  // namespace
}  // namespace pdserve::model
