// libFuzzer target for GgufFile::Parse: any input must give an error or a file whose every
// tensor lies inside the input. Built and run by deploy/fuzz-gguf.sh (clang, ASan + UBSan).
#include <cstddef>
#include <cstdint>

#include "common/gguf/gguf_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  absl::StatusOr<std::unique_ptr<pdserve::gguf::GgufFile>> file =
      pdserve::gguf::GgufFile::Parse(absl::MakeConstSpan(data, size), "fuzz.gguf");
  if (!file.ok()) return 0;
  const pdserve::gguf::GgufFile& g = **file;
  // Touch the first and last byte of every tensor: ASan reports any range outside the input.
  volatile uint8_t sink = 0;
  for (const pdserve::gguf::TensorInfo& t : g.tensors()) {
    if (t.n_bytes == 0 || t.n_elements() <= 0) __builtin_trap();
    sink = sink + t.data[0] + t.data[t.n_bytes - 1];
    if (g.FindTensor(t.name) != &t) __builtin_trap();
  }
  // Exercise the typed getters on every key.
  for (const auto& [key, value] : g.metadata()) {
    (void)g.GetUint(key);
    (void)g.GetInt(key);
    (void)g.GetFloat(key);
    (void)g.GetBool(key);
    (void)g.GetString(key);
    (void)g.GetArray(key);
  }
  return 0;
}
