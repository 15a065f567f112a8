#include "common/model/model_format.h"

#include <cerrno>
#include <cstring>
#include <fstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace pdserve::model {

ModelFormat ModelFormatOf(absl::Span<const uint8_t> first_bytes) {
  return first_bytes.size() >= 4 && std::memcmp(first_bytes.data(), "GGUF", 4) == 0
             ? ModelFormat::kGguf
             : ModelFormat::kLlama2c;
}

absl::StatusOr<ModelFormat> SniffModelFormat(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    const int err = errno;
    const std::string what = absl::StrCat(path, ": cannot open: ", std::strerror(err));
    return err == ENOENT ? absl::NotFoundError(what) : absl::InvalidArgumentError(what);
  }
  char magic[4] = {};
  in.read(magic, sizeof(magic));
  return ModelFormatOf(absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(magic),
                                           static_cast<size_t>(in.gcount())));
}

}  // namespace pdserve::model
