#include "common/model/load_model.h"

#include <cerrno>
#include <cstring>
#include <fstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/model/gguf_llama_loader.h"
#include "common/model/llama2c_loader.h"

namespace pdserve::model {

absl::StatusOr<ModelFormat> SniffModelFormat(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    const int err = errno;
    const std::string what = absl::StrCat(path, ": cannot open: ", std::strerror(err));
    return err == ENOENT ? absl::NotFoundError(what) : absl::InvalidArgumentError(what);
  }
  char magic[4] = {};
  in.read(magic, sizeof(magic));
  if (in.gcount() == sizeof(magic) && std::memcmp(magic, "GGUF", 4) == 0) {
    return ModelFormat::kGguf;
  }
  return ModelFormat::kLlama2c;
}

absl::StatusOr<ModelWeights> LoadModel(const std::string& path) {
  absl::StatusOr<ModelFormat> format = SniffModelFormat(path);
  if (!format.ok()) return format.status();
  if (*format == ModelFormat::kGguf) return LoadGgufLlama(path);
  return LoadLlama2c(path);
}

}  // namespace pdserve::model
