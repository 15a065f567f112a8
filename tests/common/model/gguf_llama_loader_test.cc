#include "common/model/gguf_llama_loader.h"

#include <cstring>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/common/gguf/gguf_builder.h"
#include "tests/common/gguf/test_data.h"

namespace pdserve::model {
namespace {

using gguf::GgufFile;
using gguf::testing::GgufBuilder;
using gguf::testing::TinyLlamaGguf;
using gguf::testing::TinyLlamaSpec;
using ::testing::HasSubstr;

// Parses `bytes` (kept alive by the caller) and loads it.
absl::StatusOr<ModelWeights> Load(const std::vector<uint8_t>& bytes) {
  absl::StatusOr<std::unique_ptr<GgufFile>> file = GgufFile::Parse(bytes, "tiny.gguf");
  if (!file.ok()) return file.status();
  return LoadGgufLlama(std::shared_ptr<const GgufFile>(*std::move(file)));
}

TEST(GgufLlamaLoaderTest, Stories260KConfig) {
  absl::StatusOr<ModelWeights> w = LoadGgufLlama(testing::SharedModelPath("stories260K.gguf"));
  ASSERT_TRUE(w.ok()) << w.status();
  const ModelConfig& c = w->config;
  EXPECT_EQ(c.dim, 64);
  EXPECT_EQ(c.n_layers, 5);
  EXPECT_EQ(c.n_heads, 8);
  EXPECT_EQ(c.n_kv_heads, 4);
  EXPECT_EQ(c.vocab_size, 512);
  EXPECT_EQ(c.hidden_dim, 172);
  EXPECT_EQ(c.context_length, 512);
  EXPECT_EQ(c.rotary_dim, 8);
  EXPECT_FLOAT_EQ(c.rope_base, 10000.0f);  // absent: the default
  EXPECT_FLOAT_EQ(c.rms_eps, 1e-5f);
  EXPECT_FALSE(w->output_tied_to_embedding);  // output.weight is a stored copy
  EXPECT_EQ(w->token_embedding.type, kernels::TensorType::kF32);
}

TEST(GgufLlamaLoaderTest, TinyModelViewsPointAtTheTensors) {
  std::vector<uint8_t> bytes = TinyLlamaGguf().Build();
  absl::StatusOr<std::unique_ptr<GgufFile>> file = GgufFile::Parse(bytes, "tiny.gguf");
  ASSERT_TRUE(file.ok()) << file.status();
  std::shared_ptr<const GgufFile> shared(*std::move(file));
  absl::StatusOr<ModelWeights> w = LoadGgufLlama(shared);
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(w->config.n_kv_heads, 2);
  EXPECT_EQ(w->config.head_dim, 8);
  EXPECT_EQ(w->config.vocab_size, 40);
  EXPECT_FLOAT_EQ(w->config.rms_eps, 1e-6f);
  EXPECT_EQ(w->layers[1].wk.data, shared->FindTensor("blk.1.attn_k.weight")->data);
  EXPECT_EQ(w->layers[1].wk.rows, 16);
  EXPECT_EQ(w->layers[1].wk.cols, 32);
  EXPECT_EQ(w->layers[0].w_down.rows, 32);
  EXPECT_EQ(w->layers[0].w_down.cols, 64);
  EXPECT_EQ(w->output.data, shared->FindTensor("output.weight")->data);
  const gguf::TensorInfo* norm = shared->FindTensor("blk.1.ffn_norm.weight");
  EXPECT_EQ(std::memcmp(w->layers[1].ffn_norm.data(), norm->data, 32 * 4), 0);
  size_t total = 0;
  for (const gguf::TensorInfo& t : shared->tensors()) total += t.n_bytes;
  EXPECT_EQ(w->weight_bytes, total);
  EXPECT_EQ(w->storage.get(), static_cast<const void*>(shared.get()));
}

TEST(GgufLlamaLoaderTest, MissingOutputIsTiedToEmbedding) {
  TinyLlamaSpec spec;
  spec.separate_output = false;
  std::vector<uint8_t> bytes = TinyLlamaGguf(spec).Build();
  absl::StatusOr<ModelWeights> w = Load(bytes);
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_TRUE(w->output_tied_to_embedding);
  EXPECT_EQ(w->output.data, w->token_embedding.data);
  EXPECT_EQ(w->output.rows, 40);
}

TEST(GgufLlamaLoaderTest, HalfPrecisionNormsAreConverted) {
  for (uint32_t type : {1u, 30u}) {
    TinyLlamaSpec spec;
    spec.norm_type_id = type;
    std::vector<uint8_t> bytes = TinyLlamaGguf(spec).Build();
    absl::StatusOr<std::unique_ptr<GgufFile>> file = GgufFile::Parse(bytes, "tiny.gguf");
    ASSERT_TRUE(file.ok()) << file.status();
    const gguf::TensorInfo* t = (*file)->FindTensor("output_norm.weight");
    std::vector<uint16_t> halves(32);
    std::memcpy(halves.data(), t->data, 64);
    absl::StatusOr<ModelWeights> w = Load(bytes);
    ASSERT_TRUE(w.ok()) << w.status();
    for (int i = 0; i < 32; ++i) {
      float expected;
      if (type == 30) {
        const uint32_t bits = static_cast<uint32_t>(halves[i]) << 16;
        std::memcpy(&expected, &bits, 4);
      } else {  // normal f16: sign, 5-bit exponent (bias 15), 10-bit mantissa
        const int exp = (halves[i] >> 10) & 0x1f;
        const float mant = 1.0f + (halves[i] & 0x3ff) / 1024.0f;
        expected = (halves[i] & 0x8000 ? -1.0f : 1.0f) * std::ldexp(mant, exp - 15);
        if (exp == 0) expected = (halves[i] & 0x8000 ? -1.0f : 1.0f) *
                                 std::ldexp((halves[i] & 0x3ff) / 1024.0f, -14);
      }
      EXPECT_EQ(w->final_norm[i], expected) << "type " << type << " element " << i;
    }
  }
}

TEST(GgufLlamaLoaderTest, DefaultsForOptionalKeys) {
  GgufBuilder b = TinyLlamaGguf();
  b.RemoveKey("llama.attention.head_count_kv").RemoveKey("llama.attention.layer_norm_rms_epsilon");
  // With head_count_kv = head_count, K and V have dim rows.
  b.FindTensor("blk.0.attn_k.weight")->dims = {32, 32};
  b.FindTensor("blk.0.attn_k.weight")->data.resize(32 * 32 * 4);
  b.FindTensor("blk.0.attn_v.weight")->dims = {32, 32};
  b.FindTensor("blk.0.attn_v.weight")->data.resize(32 * 32 * 4);
  b.FindTensor("blk.1.attn_k.weight")->dims = {32, 32};
  b.FindTensor("blk.1.attn_k.weight")->data.resize(32 * 32 * 4);
  b.FindTensor("blk.1.attn_v.weight")->dims = {32, 32};
  b.FindTensor("blk.1.attn_v.weight")->data.resize(32 * 32 * 4);
  std::vector<uint8_t> bytes = b.Build();
  absl::StatusOr<ModelWeights> w = Load(bytes);
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(w->config.n_kv_heads, 4);
  EXPECT_FLOAT_EQ(w->config.rms_eps, 1e-5f);
  EXPECT_FLOAT_EQ(w->config.rope_base, 10000.0f);
  EXPECT_EQ(w->config.rotary_dim, 8);
}

TEST(GgufLlamaLoaderTest, ExplicitRopeKeys) {
  GgufBuilder b = TinyLlamaGguf();
  b.SetF32("llama.rope.freq_base", 500000.0f).SetU32("llama.rope.dimension_count", 4);
  std::vector<uint8_t> bytes = b.Build();
  absl::StatusOr<ModelWeights> w = Load(bytes);
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_FLOAT_EQ(w->config.rope_base, 500000.0f);
  EXPECT_EQ(w->config.rotary_dim, 4);
}

void ExpectLoadError(const GgufBuilder& b, const std::string& message) {
  std::vector<uint8_t> bytes = b.Build();
  absl::StatusOr<ModelWeights> w = Load(bytes);
  ASSERT_FALSE(w.ok()) << "expected: " << message;
  EXPECT_THAT(w.status().message(), HasSubstr(message));
  EXPECT_THAT(w.status().message(), HasSubstr("tiny.gguf"));
}

TEST(GgufLlamaLoaderTest, MissingTensorIsNamed) {
  GgufBuilder b = TinyLlamaGguf();
  b.RemoveTensor("blk.1.ffn_up.weight");
  ExpectLoadError(b, "tensor 'blk.1.ffn_up.weight' is missing");
  GgufBuilder no_embd = TinyLlamaGguf();
  no_embd.RemoveTensor("token_embd.weight");
  ExpectLoadError(no_embd, "tensor 'token_embd.weight' is missing");
}

TEST(GgufLlamaLoaderTest, ShapeMismatchNamesTensorExpectedAndActual) {
  GgufBuilder b = TinyLlamaGguf();
  b.FindTensor("blk.1.attn_q.weight")->dims = {32, 16};
  b.FindTensor("blk.1.attn_q.weight")->data.resize(32 * 16 * 4);
  ExpectLoadError(b, "tensor 'blk.1.attn_q.weight': shape [32, 16], expected [32, 32]");

  GgufBuilder transposed = TinyLlamaGguf();
  transposed.FindTensor("blk.0.ffn_down.weight")->dims = {32, 64};
  ExpectLoadError(transposed, "tensor 'blk.0.ffn_down.weight': shape [32, 64], expected [64, 32]");

  GgufBuilder norm = TinyLlamaGguf();
  norm.FindTensor("output_norm.weight")->dims = {16, 2};
  ExpectLoadError(norm, "tensor 'output_norm.weight': shape [16, 2], expected [32]");

  GgufBuilder output = TinyLlamaGguf();
  output.FindTensor("output.weight")->dims = {32, 20};
  output.FindTensor("output.weight")->data.resize(32 * 20 * 4);
  ExpectLoadError(output, "tensor 'output.weight': shape [32, 20], expected [32, 40]");
}

TEST(GgufLlamaLoaderTest, WrongMetadataTypeNamesKey) {
  GgufBuilder b = TinyLlamaGguf();
  b.SetString("llama.block_count", "two");
  ExpectLoadError(b, "metadata key 'llama.block_count' has type string, expected an integer");
  GgufBuilder f = TinyLlamaGguf();
  f.SetU32("llama.rope.freq_base", 10000);
  ExpectLoadError(f, "metadata key 'llama.rope.freq_base' has type u32, expected f32 or f64");
}

TEST(GgufLlamaLoaderTest, MissingRequiredKeyIsNamed) {
  GgufBuilder b = TinyLlamaGguf();
  b.RemoveKey("llama.embedding_length");
  std::vector<uint8_t> bytes = b.Build();
  absl::StatusOr<ModelWeights> w = Load(bytes);
  EXPECT_TRUE(absl::IsNotFound(w.status())) << w.status();
  EXPECT_THAT(w.status().message(), HasSubstr("'llama.embedding_length' is missing"));
}

TEST(GgufLlamaLoaderTest, InconsistentConfigIsAnError) {
  ExpectLoadError(GgufBuilder(TinyLlamaGguf()).SetU32("llama.attention.head_count_kv", 3),
                  "n_heads 4 is not a multiple of n_kv_heads 3");
  ExpectLoadError(GgufBuilder(TinyLlamaGguf()).SetU32("llama.block_count", 0),
                  "'llama.block_count' is 0");
  ExpectLoadError(GgufBuilder(TinyLlamaGguf()).SetU32("llama.vocab_size", 41),
                  "llama.vocab_size 41 differs");
  ExpectLoadError(GgufBuilder(TinyLlamaGguf()).SetU32("llama.rope.dimension_count", 10),
                  "rotary_dim 10 must be even and at most head_dim 8");
}

TEST(GgufLlamaLoaderTest, UnsupportedArchitectureIsAnError) {
  ExpectLoadError(GgufBuilder(TinyLlamaGguf()).SetString("general.architecture", "qwen2"),
                  "architecture 'qwen2' is not supported");
}

TEST(GgufLlamaLoaderTest, QuantizedNormIsAnError) {
  GgufBuilder b = TinyLlamaGguf();
  GgufBuilder::Tensor* t = b.FindTensor("blk.0.attn_norm.weight");
  t->type_id = 8;  // q8_0: 32 elements in 34 bytes
  t->data.resize(34);
  ExpectLoadError(b, "tensor 'blk.0.attn_norm.weight': type q8_0 is not supported for a norm");
}

TEST(GgufLlamaLoaderTest, QuantizedMatricesStayQuantized) {
  GgufBuilder b = TinyLlamaGguf();
  GgufBuilder::Tensor* t = b.FindTensor("blk.0.ffn_gate.weight");  // (64, 32)
  t->type_id = 3;  // q4_1: 32 elements in 20 bytes
  t->data.assign(64 * 20, 0x11);
  std::vector<uint8_t> bytes = b.Build();
  absl::StatusOr<ModelWeights> w = Load(bytes);
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(w->layers[0].w_gate.type, kernels::TensorType::kQ4_1);
  EXPECT_EQ(w->layers[0].w_gate.row_bytes, 20u);
  EXPECT_EQ(w->layers[0].w_gate.rows, 64);
  EXPECT_EQ(w->layers[0].w_gate.cols, 32);
}

}  // namespace
}  // namespace pdserve::model
