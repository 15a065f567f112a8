#include "tests/fuzz/fuzz_targets.h"

#include <sys/stat.h>

#include <cstdlib>

namespace pdserve::fuzz {
namespace {

std::string FromEnv(const char* name, const char* fallback) {
  const char* value = std::getenv(name);
  return value != nullptr ? value : fallback;
}

}  // namespace

std::string SharedModelPath(absl::string_view file_name) {
  return FromEnv("PDSERVE_SHARED_DIR", PDSERVE_SHARED_DIR) + "/models/" + std::string(file_name);
}

std::string SmolLm2Path() {
  const std::string dir = std::getenv("PDSERVE_MODELS_DIR") != nullptr
                              ? FromEnv("PDSERVE_MODELS_DIR", "")
                              : FromEnv("PDSERVE_ROOT", PDSERVE_ROOT) + "/models";
  return dir + "/SmolLM2-135M-Instruct.Q4_1.gguf";
}

bool FileExists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

}  // namespace pdserve::fuzz
