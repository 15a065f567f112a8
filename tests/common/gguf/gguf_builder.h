#pragma once
// Test helper: writes GGUF files in memory, valid or deliberately broken, so that reader and
// loader tests need no files on disk. Keys and tensors are written in insertion order; Set*
// replaces an existing key in place.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace pdserve::gguf::testing {

class GgufBuilder {
 public:
  struct Tensor {
    std::string name;
    uint32_t type_id = 0;
    std::vector<uint64_t> dims;
    std::vector<uint8_t> data;
    std::optional<uint64_t> offset;  // default: the next aligned offset after the previous one
  };

  explicit GgufBuilder(uint32_t version = 3) : version_(version) {}

  GgufBuilder& SetU8(const std::string& key, uint8_t v) { return Scalar(key, 0, &v, 1); }
  GgufBuilder& SetI8(const std::string& key, int8_t v) { return Scalar(key, 1, &v, 1); }
  GgufBuilder& SetU16(const std::string& key, uint16_t v) { return Scalar(key, 2, &v, 2); }
  GgufBuilder& SetI16(const std::string& key, int16_t v) { return Scalar(key, 3, &v, 2); }
  GgufBuilder& SetU32(const std::string& key, uint32_t v) { return Scalar(key, 4, &v, 4); }
  GgufBuilder& SetI32(const std::string& key, int32_t v) { return Scalar(key, 5, &v, 4); }
  GgufBuilder& SetF32(const std::string& key, float v) { return Scalar(key, 6, &v, 4); }
  GgufBuilder& SetBool(const std::string& key, bool v) {
    const uint8_t b = v ? 1 : 0;
    return Scalar(key, 7, &b, 1);
  }
  GgufBuilder& SetString(const std::string& key, const std::string& v);
  GgufBuilder& SetU64(const std::string& key, uint64_t v) { return Scalar(key, 10, &v, 8); }
  GgufBuilder& SetI64(const std::string& key, int64_t v) { return Scalar(key, 11, &v, 8); }
  GgufBuilder& SetF64(const std::string& key, double v) { return Scalar(key, 12, &v, 8); }
  GgufBuilder& SetStringArray(const std::string& key, const std::vector<std::string>& v);
  GgufBuilder& SetF32Array(const std::string& key, const std::vector<float>& v);
  GgufBuilder& SetI32Array(const std::string& key, const std::vector<int32_t>& v);
  // A key whose type and value bytes are given raw (after the key): for malformed values.
  GgufBuilder& SetRaw(const std::string& key, uint32_t type_id, std::vector<uint8_t> value);
  GgufBuilder& RemoveKey(const std::string& key);

  // Data defaults to zeros of the size the type and dims imply (`type_id` must then be known).
  GgufBuilder& AddTensor(const std::string& name, uint32_t type_id, std::vector<uint64_t> dims,
                         std::vector<uint8_t> data = {});
  GgufBuilder& AddF32Tensor(const std::string& name, std::vector<uint64_t> dims,
                            const std::vector<float>& values);
  Tensor* FindTensor(const std::string& name);  // nullptr when absent
  GgufBuilder& RemoveTensor(const std::string& name);

  // Alignment used to place tensors and the data section (does not write general.alignment).
  GgufBuilder& set_alignment(uint64_t a) {
    alignment_ = a;
    return *this;
  }
  // Header counts written instead of the real ones.
  GgufBuilder& override_tensor_count(uint64_t n) {
    tensor_count_override_ = n;
    return *this;
  }
  GgufBuilder& override_kv_count(uint64_t n) {
    kv_count_override_ = n;
    return *this;
  }

  std::vector<uint8_t> Build() const;

 private:
  GgufBuilder& Scalar(const std::string& key, uint32_t type_id, const void* v, size_t n);

  struct Kv {
    std::string key;
    uint32_t type_id;
    std::vector<uint8_t> value;
  };
  uint32_t version_;
  uint64_t alignment_ = 32;
  std::optional<uint64_t> tensor_count_override_;
  std::optional<uint64_t> kv_count_override_;
  std::vector<Kv> kvs_;
  std::vector<Tensor> tensors_;
};

// A complete, valid `llama` GGUF model with small random F32 weights (deterministic), for loader
// tests to break one piece at a time.
struct TinyLlamaSpec {
  int n_layers = 2;
  int dim = 32;
  int hidden_dim = 64;
  int n_heads = 4;
  int n_kv_heads = 2;
  int vocab_size = 40;
  int context_length = 128;
  bool separate_output = true;
  uint32_t norm_type_id = 0;  // 0 f32, 1 f16, 30 bf16
};
GgufBuilder TinyLlamaGguf(const TinyLlamaSpec& spec = {});

}  // namespace pdserve::gguf::testing
