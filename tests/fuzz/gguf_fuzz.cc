// GgufFile::Parse: any input must give an error or a file whose every tensor lies inside the
// input (ASan reports a tensor range outside it).
#include "common/gguf/gguf_file.h"
#include "tests/fuzz/fuzz_targets.h"

namespace pdserve::fuzz {

bool InitGgufFuzz() { return true; }

int GgufFuzz(const uint8_t* data, size_t size) {
  absl::StatusOr<std::unique_ptr<gguf::GgufFile>> file =
      gguf::GgufFile::Parse(absl::MakeConstSpan(data, size), "fuzz.gguf");
  if (!file.ok()) return 0;
  const gguf::GgufFile& g = **file;
  // Touch the first and last byte of every tensor.
  volatile uint8_t sink = 0;
  for (const gguf::TensorInfo& t : g.tensors()) {
    PDSERVE_FUZZ_CHECK(t.n_bytes != 0 && t.n_elements() > 0, "tensor '" + t.name + "' is empty");
    sink = sink + t.data[0] + t.data[t.n_bytes - 1];
    PDSERVE_FUZZ_CHECK(g.FindTensor(t.name) == &t, "FindTensor('" + t.name + "') is another");
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

}  // namespace pdserve::fuzz

PDSERVE_FUZZ_TARGET(pdserve::fuzz::InitGgufFuzz, pdserve::fuzz::GgufFuzz)
