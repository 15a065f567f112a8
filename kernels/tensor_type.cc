#include "kernels/tensor_type.h"

#include <cstdlib>

namespace pdserve::kernels {
namespace {

constexpr TensorTypeInfo kSupportedTypes[] = {
    {TensorType::kF32, "f32", 1, 4},      {TensorType::kF16, "f16", 1, 2},
    {TensorType::kBF16, "bf16", 1, 2},    {TensorType::kQ4_0, "q4_0", 32, 18},
    {TensorType::kQ4_1, "q4_1", 32, 20},  {TensorType::kQ5_0, "q5_0", 32, 22},
    {TensorType::kQ5_1, "q5_1", 32, 24},  {TensorType::kQ8_0, "q8_0", 32, 34},
    {TensorType::kQ4_K, "q4_K", 256, 144}, {TensorType::kQ5_K, "q5_K", 256, 176},
    {TensorType::kQ6_K, "q6_K", 256, 210},
};

}  // namespace

const TensorTypeInfo* FindTensorType(uint32_t ggml_type_id) {
  for (const TensorTypeInfo& info : kSupportedTypes) {
    if (static_cast<uint32_t>(info.type) == ggml_type_id) return &info;
  }
  return nullptr;
}

const TensorTypeInfo& GetTensorTypeInfo(TensorType type) {
  const TensorTypeInfo* info = FindTensorType(static_cast<uint32_t>(type));
  if (info == nullptr) std::abort();  // every enumerator is in kSupportedTypes
  return *info;
}

}  // namespace pdserve::kernels
