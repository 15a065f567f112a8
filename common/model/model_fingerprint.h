#pragma once
// A model's identity on the wire (KvLayoutInfo.model_fingerprint): two processes whose
// fingerprints are equal run the same weights with the same tokenizer, so KV blocks one writes
// mean the same to the other. Computed from the files, never from a name.

#include <string>

#include "absl/status/statusor.h"

namespace pdserve::model {

// 32 lowercase hex digits: the XXH3-128 hash (high 64 bits, then low) of
//   - a GGUF file's header, bytes [0, end of the tensor-info table): magic, version, counts,
//     every metadata key/value (the tokenizer included) and every tensor's name, shape, type and
//     offset. The tensor data is not read, so that hashing a large model costs no more than
//     opening it; a file whose weights differ but whose header is equal hashes equal.
//   - a llama2.c `.bin` checkpoint: the whole file followed by the whole tokenizer file
//     (`tokenizer_path`, required: the checkpoint holds no vocabulary).
// The format is told by the GGUF magic (model::ModelFormatOf). `tokenizer_path` is
// ignored for GGUF. Errors name the file: NotFound when it does not exist, PermissionDenied when
// it cannot be read, InvalidArgument when it is empty, truncated or malformed, or when a
// `.bin` comes without a tokenizer path.
absl::StatusOr<std::string> ModelFingerprint(const std::string& model_path,
                                             const std::string& tokenizer_path);

}  // namespace pdserve::model
