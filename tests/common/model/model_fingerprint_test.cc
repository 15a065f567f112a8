#include "common/model/model_fingerprint.h"

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "common/gguf/gguf_file.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/common/gguf/test_data.h"
#include "xxhash.h"

namespace pdserve::model {
namespace {

using ::testing::HasSubstr;
using ::testing::MatchesRegex;

std::string Gguf() { return testing::SharedModelPath("stories260K.gguf"); }
std::string Bin() { return testing::SharedModelPath("stories260K.bin"); }
std::string Tokenizer() { return testing::SharedModelPath("tok512.bin"); }

std::vector<uint8_t> ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// Writes `bytes` to a file of its own under the test temp dir; returns its path.
std::string WriteTemp(const std::string& name, const std::vector<uint8_t>& bytes) {
  const std::string path = ::testing::TempDir() + "/fingerprint_" + name;
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
  return path;
}

std::string Hex(XXH128_hash_t h) { return absl::StrFormat("%016x%016x", h.high64, h.low64); }

// Where the value of the string key `key` starts: after the key, its type (u32) and its length
// (u64).
size_t StringValueOffset(const std::vector<uint8_t>& bytes, const std::string& key) {
  const std::string haystack(bytes.begin(), bytes.end());
  const size_t at = haystack.find(key);
  EXPECT_NE(at, std::string::npos) << key;
  return at + key.size() + 4 + 8;
}

TEST(ModelFingerprintTest, IsStableAndThirtyTwoLowercaseHexDigits) {
  absl::StatusOr<std::string> a = ModelFingerprint(Gguf(), "");
  absl::StatusOr<std::string> b = ModelFingerprint(Gguf(), "");
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(*a, *b);
  EXPECT_THAT(*a, MatchesRegex("[0-9a-f]{32}"));
  // The tokenizer path plays no part for GGUF.
  EXPECT_EQ(*ModelFingerprint(Gguf(), Tokenizer()), *a);
}

TEST(ModelFingerprintTest, GgufIsTheHashOfTheBytesUpToTheEndOfTheTensorTable) {
  absl::StatusOr<std::unique_ptr<gguf::GgufFile>> file = gguf::GgufFile::Open(Gguf());
  ASSERT_TRUE(file.ok()) << file.status();
  const uint64_t end = (*file)->tensor_info_end_offset();
  ASSERT_GT(end, 24u);
  ASSERT_LT(end, (*file)->bytes().size());
  EXPECT_EQ(*ModelFingerprint(Gguf(), ""), Hex(XXH3_128bits((*file)->bytes().data(), end)));
}

TEST(ModelFingerprintTest, Llama2cIsTheHashOfTheCheckpointThenTheTokenizer) {
  std::vector<uint8_t> both = ReadAll(Bin());
  const std::vector<uint8_t> tokenizer = ReadAll(Tokenizer());
  both.insert(both.end(), tokenizer.begin(), tokenizer.end());
  absl::StatusOr<std::string> fingerprint = ModelFingerprint(Bin(), Tokenizer());
  ASSERT_TRUE(fingerprint.ok()) << fingerprint.status();
  EXPECT_EQ(*fingerprint, Hex(XXH3_128bits(both.data(), both.size())));
}

TEST(ModelFingerprintTest, TheGgufAndTheBinOfTheSameModelDiffer) {
  absl::StatusOr<std::string> gguf = ModelFingerprint(Gguf(), "");
  absl::StatusOr<std::string> bin = ModelFingerprint(Bin(), Tokenizer());
  ASSERT_TRUE(gguf.ok()) << gguf.status();
  ASSERT_TRUE(bin.ok()) << bin.status();
  EXPECT_NE(*gguf, *bin);
}

TEST(ModelFingerprintTest, AGgufMetadataByteCountsButATensorDataByteDoesNot) {
  const std::vector<uint8_t> original = ReadAll(Gguf());
  const std::string reference = *ModelFingerprint(Gguf(), "");

  std::vector<uint8_t> metadata = original;
  metadata[StringValueOffset(original, "general.architecture")] ^= 0x20;  // "llama" -> "Llama"
  const std::string metadata_path = WriteTemp("metadata.gguf", metadata);
  absl::StatusOr<std::string> changed = ModelFingerprint(metadata_path, "");
  ASSERT_TRUE(changed.ok()) << changed.status();
  EXPECT_NE(*changed, reference);

  absl::StatusOr<std::unique_ptr<gguf::GgufFile>> file = gguf::GgufFile::Open(Gguf());
  ASSERT_TRUE(file.ok()) << file.status();
  const gguf::TensorInfo& tensor = (*file)->tensors().front();
  const size_t data_byte = (*file)->data_section_offset() + tensor.offset + tensor.n_bytes / 2;
  std::vector<uint8_t> data = original;
  data[data_byte] ^= 0xff;
  const std::string data_path = WriteTemp("data.gguf", data);
  absl::StatusOr<std::string> same = ModelFingerprint(data_path, "");
  ASSERT_TRUE(same.ok()) << same.status();
  EXPECT_EQ(*same, reference);
}

TEST(ModelFingerprintTest, ABinCheckpointOrTokenizerByteCounts) {
  const std::string reference = *ModelFingerprint(Bin(), Tokenizer());

  std::vector<uint8_t> tokenizer = ReadAll(Tokenizer());
  tokenizer[tokenizer.size() / 2] ^= 0x01;
  absl::StatusOr<std::string> other_tokenizer =
      ModelFingerprint(Bin(), WriteTemp("tok.bin", tokenizer));
  ASSERT_TRUE(other_tokenizer.ok()) << other_tokenizer.status();
  EXPECT_NE(*other_tokenizer, reference);

  std::vector<uint8_t> weights = ReadAll(Bin());
  weights.back() ^= 0x01;
  absl::StatusOr<std::string> other_weights =
      ModelFingerprint(WriteTemp("weights.bin", weights), Tokenizer());
  ASSERT_TRUE(other_weights.ok()) << other_weights.status();
  EXPECT_NE(*other_weights, reference);
}

TEST(ModelFingerprintTest, MissingFilesAreNotFoundNamingThem) {
  absl::StatusOr<std::string> model = ModelFingerprint("/nonexistent/m.gguf", "");
  EXPECT_TRUE(absl::IsNotFound(model.status())) << model.status();
  EXPECT_THAT(model.status().message(), HasSubstr("/nonexistent/m.gguf"));

  absl::StatusOr<std::string> tokenizer = ModelFingerprint(Bin(), "/nonexistent/tok.bin");
  EXPECT_TRUE(absl::IsNotFound(tokenizer.status())) << tokenizer.status();
  EXPECT_THAT(tokenizer.status().message(), HasSubstr("/nonexistent/tok.bin"));
}

TEST(ModelFingerprintTest, ABinNeedsItsTokenizer) {
  absl::StatusOr<std::string> fingerprint = ModelFingerprint(Bin(), "");
  EXPECT_TRUE(absl::IsInvalidArgument(fingerprint.status())) << fingerprint.status();
  EXPECT_THAT(fingerprint.status().message(), HasSubstr("stories260K.bin"));
  EXPECT_THAT(fingerprint.status().message(), HasSubstr("tokenizer"));
}

TEST(ModelFingerprintTest, TruncatedAndEmptyFilesAreErrorsNamingThem) {
  const std::vector<uint8_t> gguf = ReadAll(Gguf());
  const std::string cut_gguf =
      WriteTemp("cut.gguf", std::vector<uint8_t>(gguf.begin(), gguf.begin() + 100));
  absl::StatusOr<std::string> a = ModelFingerprint(cut_gguf, "");
  EXPECT_TRUE(absl::IsInvalidArgument(a.status())) << a.status();
  EXPECT_THAT(a.status().message(), HasSubstr(cut_gguf));

  const std::vector<uint8_t> bin = ReadAll(Bin());
  const std::string cut_bin =
      WriteTemp("cut.bin", std::vector<uint8_t>(bin.begin(), bin.begin() + 10));
  absl::StatusOr<std::string> b = ModelFingerprint(cut_bin, Tokenizer());
  EXPECT_TRUE(absl::IsInvalidArgument(b.status())) << b.status();
  EXPECT_THAT(b.status().message(), HasSubstr(cut_bin));
  EXPECT_THAT(b.status().message(), HasSubstr("truncated"));

  const std::string empty = WriteTemp("empty.bin", {});
  absl::StatusOr<std::string> c = ModelFingerprint(Bin(), empty);
  EXPECT_TRUE(absl::IsInvalidArgument(c.status())) << c.status();
  EXPECT_THAT(c.status().message(), HasSubstr(empty));
}

}  // namespace
}  // namespace pdserve::model
