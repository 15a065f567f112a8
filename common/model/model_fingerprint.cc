#include "common/model/model_fingerprint.h"

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/types/span.h"
#include "common/gguf/gguf_file.h"
#include "common/gguf/mapped_file.h"
#include "common/model/model_format.h"
#include "xxhash.h"

namespace pdserve::model {
namespace {

constexpr size_t kLlama2cHeaderBytes = 7 * sizeof(int32_t);

std::string ToHex(XXH128_hash_t hash) {
  return absl::StrFormat("%016x%016x", hash.high64, hash.low64);
}

absl::StatusOr<std::string> GgufFingerprint(const gguf::MappedFile& model) {
  // Parsing validates the whole table (a truncated or malformed file is an error naming it) and
  // finds where it ends.
  absl::StatusOr<std::unique_ptr<gguf::GgufFile>> file =
      gguf::GgufFile::Parse(model.bytes(), model.path());
  if (!file.ok()) return file.status();
  const absl::Span<const uint8_t> header =
      model.bytes().subspan(0, (*file)->tensor_info_end_offset());
  return ToHex(XXH3_128bits(header.data(), header.size()));
}

absl::StatusOr<std::string> Llama2cFingerprint(const gguf::MappedFile& model,
                                               const std::string& tokenizer_path) {
  if (model.bytes().size() < kLlama2cHeaderBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        model.path(), ": truncated: ", model.bytes().size(),
        " bytes, shorter than a llama2.c header (", kLlama2cHeaderBytes, " bytes)"));
  }
  if (tokenizer_path.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        model.path(), " is a llama2.c checkpoint: its fingerprint needs the tokenizer file"));
  }
  absl::StatusOr<std::unique_ptr<gguf::MappedFile>> tokenizer =
      gguf::MappedFile::Open(tokenizer_path);
  if (!tokenizer.ok()) return tokenizer.status();

  std::unique_ptr<XXH3_state_t, decltype(&XXH3_freeState)> state(XXH3_createState(),
                                                                  &XXH3_freeState);
  if (state == nullptr) return absl::ResourceExhaustedError("XXH3_createState failed");
  XXH3_128bits_reset(state.get());
  XXH3_128bits_update(state.get(), model.bytes().data(), model.bytes().size());
  XXH3_128bits_update(state.get(), (*tokenizer)->bytes().data(), (*tokenizer)->bytes().size());
  return ToHex(XXH3_128bits_digest(state.get()));
}

}  // namespace

absl::StatusOr<std::string> ModelFingerprint(const std::string& model_path,
                                             const std::string& tokenizer_path) {
  absl::StatusOr<std::unique_ptr<gguf::MappedFile>> model = gguf::MappedFile::Open(model_path);
  if (!model.ok()) return model.status();
  if (ModelFormatOf((*model)->bytes()) == ModelFormat::kGguf) return GgufFingerprint(**model);
  return Llama2cFingerprint(**model, tokenizer_path);
}

}  // namespace pdserve::model
