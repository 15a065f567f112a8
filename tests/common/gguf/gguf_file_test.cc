#include "common/gguf/gguf_file.h"

#include <cstring>
#include <fstream>
#include <limits>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/common/gguf/gguf_builder.h"
#include "tests/common/gguf/test_data.h"

namespace pdserve::gguf {
namespace {

using testing::GgufBuilder;
using ::testing::HasSubstr;

// A small valid file with every scalar type, string and numeric arrays, and three tensors of
// different types. The last tensor's data ends the file, so every shorter prefix is invalid.
GgufBuilder SmallFile() {
  GgufBuilder b;
  b.SetString("general.architecture", "llama")
      .SetU8("t.u8", 200)
      .SetI8("t.i8", -100)
      .SetU16("t.u16", 60000)
      .SetI16("t.i16", -30000)
      .SetU32("t.u32", 4000000000u)
      .SetI32("t.i32", -2000000000)
      .SetF32("t.f32", 0.5f)
      .SetBool("t.bool", true)
      .SetU64("t.u64", 1ull << 63)
      .SetI64("t.i64", -(1ll << 62))
      .SetF64("t.f64", 0.25)
      .SetStringArray("t.strings", {"a", "", "hello"})
      .SetF32Array("t.floats", {1.5f, -2.0f})
      .SetI32Array("t.ints", {-1, 7})
      .SetStringArray("t.no_strings", {});
  b.AddF32Tensor("a.weight", {4, 2}, {0, 1, 2, 3, 4, 5, 6, 7});
  b.AddTensor("b.weight", 1, {8});         // f16
  b.AddTensor("c.weight", 8, {32, 2, 1});  // q8_0, 3 dims
  return b;
}

absl::StatusOr<std::unique_ptr<GgufFile>> ParseBytes(const std::vector<uint8_t>& bytes) {
  return GgufFile::Parse(bytes, "test.gguf");
}

void ExpectParseError(const std::vector<uint8_t>& bytes, const std::string& message) {
  absl::StatusOr<std::unique_ptr<GgufFile>> f = ParseBytes(bytes);
  ASSERT_FALSE(f.ok()) << "expected an error containing: " << message;
  EXPECT_TRUE(absl::IsInvalidArgument(f.status())) << f.status();
  EXPECT_THAT(f.status().message(), HasSubstr("test.gguf: "));
  EXPECT_THAT(f.status().message(), HasSubstr(message));
}

TEST(GgufFileTest, ParsesEveryValueType) {
  std::vector<uint8_t> bytes = SmallFile().Build();
  absl::StatusOr<std::unique_ptr<GgufFile>> f = ParseBytes(bytes);
  ASSERT_TRUE(f.ok()) << f.status();
  const GgufFile& g = **f;
  EXPECT_EQ(g.version(), 3u);
  EXPECT_EQ(g.metadata().size(), 16u);
  EXPECT_EQ(*g.GetString("general.architecture"), "llama");
  EXPECT_EQ(*g.GetUint("t.u8"), 200u);
  EXPECT_EQ(*g.GetInt("t.i8"), -100);
  EXPECT_EQ(*g.GetUint("t.u16"), 60000u);
  EXPECT_EQ(*g.GetInt("t.i16"), -30000);
  EXPECT_EQ(*g.GetUint("t.u32"), 4000000000u);
  EXPECT_EQ(*g.GetInt("t.u32"), 4000000000);  // integer getters accept any fitting integer
  EXPECT_EQ(*g.GetInt("t.i32"), -2000000000);
  EXPECT_EQ(*g.GetFloat("t.f32"), 0.5);
  EXPECT_EQ(*g.GetBool("t.bool"), true);
  EXPECT_EQ(*g.GetUint("t.u64"), 1ull << 63);
  EXPECT_EQ(*g.GetInt("t.i64"), -(1ll << 62));
  EXPECT_EQ(*g.GetFloat("t.f64"), 0.25);
  EXPECT_EQ(g.Find("t.f32")->type, ValueType::kF32);
  EXPECT_EQ(g.Find("t.f64")->type, ValueType::kF64);
  EXPECT_EQ(g.Find("missing"), nullptr);

  const ArrayValue* strings = *g.GetArray("t.strings");
  EXPECT_EQ(strings->element_type, ValueType::kString);
  EXPECT_THAT(strings->strings, ::testing::ElementsAre("a", "", "hello"));
  const ArrayValue* floats = *g.GetArray("t.floats");
  EXPECT_EQ(floats->element_type, ValueType::kF32);
  EXPECT_THAT(floats->floats, ::testing::ElementsAre(1.5, -2.0));
  const ArrayValue* ints = *g.GetArray("t.ints");
  EXPECT_THAT(ints->ints, ::testing::ElementsAre(-1, 7));
  EXPECT_TRUE((*g.GetArray("t.no_strings"))->strings.empty());
}

TEST(GgufFileTest, GetterErrorsNameTheKey) {
  std::vector<uint8_t> bytes = SmallFile().Build();
  std::unique_ptr<GgufFile> g = *ParseBytes(bytes);
  EXPECT_TRUE(absl::IsNotFound(g->GetUint("nope").status()));
  EXPECT_THAT(g->GetUint("nope").status().message(), HasSubstr("'nope' is missing"));
  EXPECT_THAT(g->GetUint("t.i8").status().message(), HasSubstr("'t.i8' is -100"));
  EXPECT_THAT(g->GetInt("t.u64").status().message(), HasSubstr("too large"));
  EXPECT_THAT(g->GetFloat("t.u32").status().message(),
              HasSubstr("metadata key 't.u32' has type u32, expected f32 or f64"));
  EXPECT_THAT(g->GetString("t.bool").status().message(), HasSubstr("has type bool"));
  EXPECT_THAT(g->GetBool("t.u8").status().message(), HasSubstr("has type u8"));
  EXPECT_THAT(g->GetArray("t.f32").status().message(), HasSubstr("has type f32"));
  EXPECT_THAT(g->GetUint("t.strings").status().message(), HasSubstr("has type array"));
}

TEST(GgufFileTest, TensorTable) {
  std::vector<uint8_t> bytes = SmallFile().Build();
  std::unique_ptr<GgufFile> g = *ParseBytes(bytes);
  ASSERT_EQ(g->tensors().size(), 3u);
  const TensorInfo* a = g->FindTensor("a.weight");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->type, kernels::TensorType::kF32);
  EXPECT_THAT(a->dims, ::testing::ElementsAre(4, 2));
  EXPECT_EQ(a->n_elements(), 8);
  EXPECT_EQ(a->n_bytes, 32u);
  EXPECT_EQ(a->offset, 0u);
  EXPECT_EQ(g->data_section_offset() % 32, 0u);
  EXPECT_EQ(a->data, bytes.data() + g->data_section_offset());
  float f[8];
  std::memcpy(f, a->data, sizeof(f));
  EXPECT_EQ(f[5], 5.0f);
  const TensorInfo* c = g->FindTensor("c.weight");
  EXPECT_EQ(c->type, kernels::TensorType::kQ8_0);
  EXPECT_EQ(c->n_bytes, 68u);
  EXPECT_EQ(c->offset % 32, 0u);
  EXPECT_EQ(c->data + c->n_bytes, bytes.data() + bytes.size());
  EXPECT_EQ(g->FindTensor("nope"), nullptr);
  EXPECT_EQ(g->alignment(), 32u);
}

TEST(GgufFileTest, TensorInfoEndIsBeforeTheAlignmentPadding) {
  std::vector<uint8_t> bytes = GgufBuilder().SetU32("k", 1).AddTensor("t", 0, {4}).Build();
  std::unique_ptr<GgufFile> g = *ParseBytes(bytes);
  // magic 4 + version 4 + counts 16; key "k": length 8 + 1 + type 4 + u32 4; tensor "t":
  // name length 8 + 1 + n_dims 4 + dim 8 + type 4 + offset 8.
  EXPECT_EQ(g->tensor_info_end_offset(), 24u + 17u + 33u);
  EXPECT_EQ(g->data_section_offset(), 96u);  // rounded up to the alignment 32
}

TEST(GgufFileTest, Version2IsAccepted) {
  std::vector<uint8_t> bytes = GgufBuilder(2).SetU32("k", 1).AddTensor("t", 0, {4}).Build();
  absl::StatusOr<std::unique_ptr<GgufFile>> f = ParseBytes(bytes);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ((*f)->version(), 2u);
}

TEST(GgufFileTest, EmptyFileWithoutTensorsIsValid) {
  std::vector<uint8_t> bytes = GgufBuilder().Build();
  EXPECT_EQ(bytes.size(), 24u);
  absl::StatusOr<std::unique_ptr<GgufFile>> f = ParseBytes(bytes);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_TRUE((*f)->tensors().empty());
}

TEST(GgufFileTest, EveryTruncationIsAnError) {
  std::vector<uint8_t> bytes = SmallFile().Build();
  for (size_t n = 0; n < bytes.size(); ++n) {
    std::vector<uint8_t> prefix(bytes.begin(), bytes.begin() + n);
    absl::StatusOr<std::unique_ptr<GgufFile>> f = ParseBytes(prefix);
    ASSERT_FALSE(f.ok()) << "prefix of " << n << " bytes parsed";
    ASSERT_THAT(f.status().message(), HasSubstr("test.gguf: ")) << n;
  }
}

TEST(GgufFileTest, BadMagic) {
  std::vector<uint8_t> bytes = SmallFile().Build();
  bytes[0] = 'X';
  ExpectParseError(bytes, "not a GGUF file");
}

TEST(GgufFileTest, UnsupportedVersions) {
  for (uint32_t v : {0u, 1u, 4u, 0xffffffffu}) {
    std::vector<uint8_t> bytes = GgufBuilder(v).Build();
    ExpectParseError(bytes, "GGUF version " + std::to_string(v) + " is not supported");
  }
}

TEST(GgufFileTest, HugeCountsDoNotAllocate) {
  ExpectParseError(GgufBuilder().override_kv_count(std::numeric_limits<uint64_t>::max()).Build(),
                   "metadata count 18446744073709551615 cannot fit");
  ExpectParseError(GgufBuilder().override_tensor_count(1ull << 40).Build(),
                   "tensor count 1099511627776 cannot fit");
  // A string longer than the file.
  std::vector<uint8_t> huge_len(8);
  const uint64_t len = 1ull << 62;
  std::memcpy(huge_len.data(), &len, 8);
  ExpectParseError(GgufBuilder().SetRaw("k", 8, huge_len).Build(),
                   "string length 4611686018427387904");
  // An array claiming 2^60 u32 elements.
  std::vector<uint8_t> arr = {4, 0, 0, 0};
  const uint64_t n = 1ull << 60;
  arr.resize(12);
  std::memcpy(arr.data() + 4, &n, 8);
  ExpectParseError(GgufBuilder().SetRaw("k", 9, arr).Build(),
                   "key 'k': array of 1152921504606846976 u32 elements does not fit");
}

TEST(GgufFileTest, MalformedValues) {
  ExpectParseError(GgufBuilder().SetRaw("k", 13, {0}).Build(), "key 'k': unknown value type 13");
  ExpectParseError(GgufBuilder().SetRaw("k", 7, {2}).Build(), "invalid bool byte 2");
  ExpectParseError(GgufBuilder().SetRaw("k", 9, {9, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0}).Build(),
                   "key 'k': arrays of arrays are not supported");
  ExpectParseError(GgufBuilder().SetRaw("k", 9, {77, 0, 0, 0}).Build(),
                   "unknown array element type 77");
}

TEST(GgufFileTest, DuplicateMetadataKey) {
  // SetRaw replaces a key in place, so append the duplicate by hand.
  std::vector<uint8_t> bytes = GgufBuilder().SetU32("k", 1).SetU32("j", 2).Build();
  const std::vector<uint8_t> kv = {1, 0, 0, 0, 0, 0, 0, 0, 'k', 4, 0, 0, 0, 3, 0, 0, 0};
  bytes.insert(bytes.end(), kv.begin(), kv.end());
  bytes[16] = 3;  // the kv count follows the magic, version and tensor count
  ExpectParseError(bytes, "duplicate metadata key 'k'");
}

TEST(GgufFileTest, AlignmentKey) {
  // A custom power-of-two alignment places the data section and tensors on it.
  GgufBuilder b;
  b.SetU32("general.alignment", 64).set_alignment(64);
  b.AddTensor("x", 0, {3}).AddTensor("y", 0, {5});
  std::vector<uint8_t> bytes = b.Build();
  absl::StatusOr<std::unique_ptr<GgufFile>> f = ParseBytes(bytes);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ((*f)->alignment(), 64u);
  EXPECT_EQ((*f)->data_section_offset() % 64, 0u);
  EXPECT_EQ((*f)->FindTensor("y")->offset, 64u);

  ExpectParseError(GgufBuilder().SetU32("general.alignment", 48).Build(),
                   "general.alignment 48 is not a power of two");
  ExpectParseError(GgufBuilder().SetU32("general.alignment", 0).Build(),
                   "general.alignment 0 is not a power of two");
  ExpectParseError(GgufBuilder().SetString("general.alignment", "32").Build(),
                   "general.alignment has type string, expected an integer");
}

TEST(GgufFileTest, MisalignedTensorOffset) {
  GgufBuilder b;
  b.AddTensor("x", 0, {8});
  b.FindTensor("x")->offset = 4;
  ExpectParseError(b.Build(), "tensor 'x': data offset 4 is not a multiple of the alignment 32");
}

TEST(GgufFileTest, DataOutOfRange) {
  GgufBuilder b;
  b.AddTensor("x", 0, {8}).AddTensor("y", 0, {8});
  b.FindTensor("y")->offset = 1ull << 40;
  ExpectParseError(b.Build(), "tensor 'y': data at offset 1099511627776 (32 bytes) extends past");
  GgufBuilder wrap;
  wrap.AddTensor("x", 0, {8});
  wrap.FindTensor("x")->offset = std::numeric_limits<uint64_t>::max() - 31;
  ExpectParseError(wrap.Build(), "tensor 'x': data at offset");
  // Data shorter than the tensor: drop the last bytes of the file.
  std::vector<uint8_t> bytes = GgufBuilder().AddTensor("x", 0, {8}).Build();
  bytes.pop_back();
  ExpectParseError(bytes, "tensor 'x': data at offset 0 (32 bytes) extends past");
}

TEST(GgufFileTest, OverlappingTensors) {
  GgufBuilder b;
  b.AddTensor("x", 0, {16}).AddTensor("y", 0, {8});
  b.FindTensor("y")->offset = 32;  // x is [0, 64)
  ExpectParseError(b.Build(), "tensors 'x' and 'y' overlap");
}

TEST(GgufFileTest, UnknownTensorTypeIsNamed) {
  GgufBuilder b;
  b.AddTensor("blk.3.attn_q.weight", 42, {32}, std::vector<uint8_t>(64));
  ExpectParseError(b.Build(), "tensor 'blk.3.attn_q.weight': type 42 is not supported");
}

TEST(GgufFileTest, InvalidDims) {
  ExpectParseError(GgufBuilder().AddTensor("x", 0, {}, {0, 0, 0, 0}).Build(),
                   "tensor 'x': 0 dimensions (must be 1 to 4)");
  ExpectParseError(GgufBuilder().AddTensor("x", 0, {1, 1, 1, 1, 1}).Build(),
                   "tensor 'x': 5 dimensions");
  ExpectParseError(GgufBuilder().AddTensor("x", 0, {4, 0}, {0}).Build(),
                   "tensor 'x': dimension 1 is 0");
  ExpectParseError(GgufBuilder().AddTensor("x", 0, {1ull << 63}, {0}).Build(),
                   "tensor 'x': dimension 0 is 9223372036854775808");
  ExpectParseError(GgufBuilder().AddTensor("x", 0, {1ull << 32, 1ull << 32}, {0}).Build(),
                   "tensor 'x': element count overflows");
  ExpectParseError(GgufBuilder().AddTensor("x", 0, {1ull << 61, 2}, {0}).Build(),
                   "tensor 'x': byte size overflows");
  ExpectParseError(GgufBuilder().AddTensor("q", 8, {48}, std::vector<uint8_t>(68)).Build(),
                   "tensor 'q': row length 48 is not a multiple of the q8_0 block size 32");
  ExpectParseError(GgufBuilder().AddTensor("", 0, {4}).Build(), "tensor #0 has an empty name");
}

TEST(GgufFileTest, DuplicateTensorName) {
  ExpectParseError(GgufBuilder().AddTensor("x", 0, {4}).AddTensor("x", 0, {4}).Build(),
                   "duplicate tensor name 'x'");
}

TEST(GgufFileTest, OpenMapsARealFile) {
  const std::string path = pdserve::testing::SharedModelPath("stories260K.gguf");
  absl::StatusOr<std::unique_ptr<GgufFile>> f = GgufFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ((*f)->version(), 3u);
  EXPECT_EQ((*f)->display_name(), path);
  EXPECT_EQ((*f)->tensors().size(), 48u);
  EXPECT_EQ(*(*f)->GetString("general.architecture"), "llama");
  EXPECT_EQ(*(*f)->GetUint("llama.context_length"), 512u);
  EXPECT_EQ((*(*f)->GetArray("tokenizer.ggml.tokens"))->strings.size(), 512u);
  EXPECT_EQ((*(*f)->GetArray("tokenizer.ggml.scores"))->floats.size(), 512u);
  const TensorInfo* embd = (*f)->FindTensor("token_embd.weight");
  ASSERT_NE(embd, nullptr);
  EXPECT_THAT(embd->dims, ::testing::ElementsAre(64, 512));
  EXPECT_EQ(embd->data + embd->n_bytes <= (*f)->bytes().data() + (*f)->bytes().size(), true);
}

TEST(GgufFileTest, OpenErrors) {
  absl::StatusOr<std::unique_ptr<GgufFile>> missing = GgufFile::Open("/nonexistent/a.gguf");
  EXPECT_TRUE(absl::IsNotFound(missing.status()));
  EXPECT_THAT(missing.status().message(), HasSubstr("/nonexistent/a.gguf"));
  const std::string empty = ::testing::TempDir() + "/empty.gguf";
  std::ofstream(empty).close();
  EXPECT_THAT(GgufFile::Open(empty).status().message(), HasSubstr("empty"));
  const std::string bad = ::testing::TempDir() + "/bad_version.gguf";
  {
    std::vector<uint8_t> bytes = GgufBuilder(1).Build();
    std::ofstream(bad, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()),
                                               bytes.size());
  }
  EXPECT_THAT(GgufFile::Open(bad).status().message(),
              HasSubstr(bad + ": GGUF version 1 is not supported"));
  EXPECT_FALSE(GgufFile::Open(::testing::TempDir()).ok());  // a directory
}

}  // namespace
}  // namespace pdserve::gguf
