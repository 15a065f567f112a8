#include "common/model/load_model.h"

#include "absl/status/status.h"
#include "common/model/gguf_llama_loader.h"
#include "common/model/llama2c_loader.h"

namespace pdserve::model {

absl::StatusOr<ModelWeights> LoadModel(const std::string& path) {
  absl::StatusOr<ModelFormat> format = SniffModelFormat(path);
  if (!format.ok()) return format.status();
  if (*format == ModelFormat::kGguf) return LoadGgufLlama(path);
  return LoadLlama2c(path);
}

}  // namespace pdserve::model
