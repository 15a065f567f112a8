#pragma once
// Which loader a model file needs, told by its first bytes. Apart from the loaders so that code
// that must not link the CPU kernels (the router, the model fingerprint) asks the same question.

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace pdserve::model {

enum class ModelFormat { kGguf, kLlama2c };

// kGguf when `first_bytes` start with the GGUF magic, else kLlama2c (validated by its loader).
ModelFormat ModelFormatOf(absl::Span<const uint8_t> first_bytes);

// ModelFormatOf the file's first bytes. NotFound when the file does not exist, InvalidArgument
// when it cannot be opened otherwise; both name the file.
absl::StatusOr<ModelFormat> SniffModelFormat(const std::string& path);

}  // namespace pdserve::model
