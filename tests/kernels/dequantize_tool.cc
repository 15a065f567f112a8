// pdserve-dequantize-tool: a command-line face of the dequantizers and converters, for tests in
// other languages (test_dequantize_vs_gguf.py compares it with the `gguf` package).
//
//   pdserve-dequantize-tool dequantize <type> <isa> <in.bin> <out.f32>
//       in.bin holds whole blocks of <type> (a ggml name: q4_1, f16, ...); writes f32 values.
//   pdserve-dequantize-tool to-f16 <in.f32> <out.bin>    F32ToF16 of each value
//   pdserve-dequantize-tool to-bf16 <in.f32> <out.bin>   F32ToBf16 of each value

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/cpu/dequantize.h"
#include "kernels/cpu/isa.h"
#include "kernels/tensor_type.h"

namespace pdserve::kernels {
namespace {

bool ReadFile(const char* path, std::vector<uint8_t>* bytes) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  bytes->assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  return true;
}

bool WriteFile(const char* path, const void* data, size_t size) {
  std::ofstream out(path, std::ios::binary);
  out.write(static_cast<const char*>(data), static_cast<std::streamsize>(size));
  return static_cast<bool>(out);
}

const TensorTypeInfo* TypeByName(const std::string& name) {
  for (uint32_t id = 0; id < 64; ++id) {
    const TensorTypeInfo* info = FindTensorType(id);
    if (info != nullptr && name == info->name) return info;
  }
  return nullptr;
}

int DequantizeCommand(const char* type_name, const char* isa_name, const char* in, const char* out) {
  const TensorTypeInfo* info = TypeByName(type_name);
  if (info == nullptr) {
    std::fprintf(stderr, "unknown type '%s'\n", type_name);
    return 2;
  }
  const absl::StatusOr<Isa> isa = ParseIsa(isa_name);
  if (!isa.ok()) {
    std::fprintf(stderr, "%s\n", std::string(isa.status().message()).c_str());
    return 2;
  }
  std::vector<uint8_t> bytes;
  if (!ReadFile(in, &bytes) || bytes.size() % info->block_bytes != 0) {
    std::fprintf(stderr, "%s: unreadable, or not whole %s blocks\n", in, info->name);
    return 1;
  }
  const int64_t n = static_cast<int64_t>(bytes.size()) / info->block_bytes * info->block_elems;
  std::vector<float> values(static_cast<size_t>(n));
  Dequantize(info->type, bytes.data(), values.data(), n, *isa);
  return WriteFile(out, values.data(), values.size() * sizeof(float)) ? 0 : 1;
}

int ConvertCommand(bool bf16, const char* in, const char* out) {
  std::vector<uint8_t> bytes;
  if (!ReadFile(in, &bytes) || bytes.size() % 4 != 0) {
    std::fprintf(stderr, "%s: unreadable, or not f32 values\n", in);
    return 1;
  }
  std::vector<uint16_t> halves(bytes.size() / 4);
  for (size_t i = 0; i < halves.size(); ++i) {
    float f;
    std::memcpy(&f, bytes.data() + 4 * i, sizeof(f));
    halves[i] = bf16 ? F32ToBf16(f) : F32ToF16(f);
  }
  return WriteFile(out, halves.data(), halves.size() * sizeof(uint16_t)) ? 0 : 1;
}

}  // namespace
}  // namespace pdserve::kernels

int main(int argc, char** argv) {
  const std::string command = argc > 1 ? argv[1] : "";
  if (command == "dequantize" && argc == 6) {
    return pdserve::kernels::DequantizeCommand(argv[2], argv[3], argv[4], argv[5]);
  }
  if ((command == "to-f16" || command == "to-bf16") && argc == 4) {
    return pdserve::kernels::ConvertCommand(command == "to-bf16", argv[2], argv[3]);
  }
  std::fprintf(stderr,
               "usage: %s dequantize <type> <isa> <in.bin> <out.f32>\n"
               "       %s to-f16|to-bf16 <in.f32> <out.bin>\n",
               argv[0], argv[0]);
  return 2;
}
