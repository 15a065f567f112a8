#pragma once
// Element types of weight tensors, numbered as GGUF/ggml numbers them (the `type` field of a
// GGUF tensor-info entry), with each type's block geometry. Pure data: no dependency on common/.

#include <cstddef>
#include <cstdint>

namespace pdserve::kernels {

enum class TensorType : uint32_t {
  kF32 = 0,
  kF16 = 1,
  kQ4_0 = 2,
  kQ4_1 = 3,
  kQ5_0 = 6,
  kQ5_1 = 7,
  kQ8_0 = 8,
  kQ4_K = 12,
  kQ5_K = 13,
  kQ6_K = 14,
  kBF16 = 30,
};

// A type's storage unit: `block_elems` consecutive elements of a row are stored in `block_bytes`
// bytes. A row's element count must be a multiple of block_elems.
struct TensorTypeInfo {
  TensorType type;
  const char* name;  // as ggml names it: "q4_1"
  int64_t block_elems;
  int64_t block_bytes;
};

// The info of a supported type, or nullptr for any other ggml type id (unknown or unsupported).
const TensorTypeInfo* FindTensorType(uint32_t ggml_type_id);
const TensorTypeInfo& GetTensorTypeInfo(TensorType type);

// Bytes of one row of n_elems elements. Precondition: n_elems % block_elems == 0.
inline size_t RowBytes(const TensorTypeInfo& info, int64_t n_elems) {
  return static_cast<size_t>(n_elems / info.block_elems * info.block_bytes);
}

}  // namespace pdserve::kernels
