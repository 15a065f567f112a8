#pragma once
// Paths of the shared test models. ../shared is required: a missing file fails the test with a
// message saying where it was looked for (never a skip).

#include <cstdlib>
#include <filesystem>
#include <string>

#include "gtest/gtest.h"

namespace pdserve::testing {

// PDSERVE_SHARED_DIR from the environment (set by ctest), else the compile-time default.
inline std::string SharedDir() {
  const char* env = std::getenv("PDSERVE_SHARED_DIR");
  if (env != nullptr && *env != '\0') return env;
#ifdef PDSERVE_SHARED_DIR
  return PDSERVE_SHARED_DIR;
#else
  return "../shared";
#endif
}

// The path of ../shared/models/<name>; adds a test failure when it does not exist.
inline std::string SharedModelPath(const std::string& name) {
  const std::string path = SharedDir() + "/models/" + name;
  if (!std::filesystem::exists(path)) {
    ADD_FAILURE() << "missing shared test model " << path
                  << ": the read-only ../shared folder (PDSERVE_SHARED_DIR) must sit beside the "
                     "checkout";
  }
  return path;
}

// models/SmolLM2-135M-Instruct.Q4_1.gguf (fetched by deploy/fetch-model.sh, the `smollm2` ctest
// fixture); adds a test failure when absent.
inline std::string SmolLm2Path() {
  const char* dir = std::getenv("PDSERVE_MODELS_DIR");
  std::string root = PDSERVE_ROOT;
  const std::string path = (dir != nullptr && *dir != '\0' ? std::string(dir) : root + "/models") +
                           "/SmolLM2-135M-Instruct.Q4_1.gguf";
  if (!std::filesystem::exists(path)) {
    ADD_FAILURE() << "missing " << path << ": run deploy/fetch-model.sh (ctest runs it as the "
                  << "smollm2 fixture)";
  }
  return path;
}

}  // namespace pdserve::testing
