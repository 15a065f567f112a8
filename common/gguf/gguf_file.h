#pragma once
// A parsed, memory-mapped GGUF file (versions 2 and 3): metadata key/values, the tensor table and
// the tensor data. Every malformed, truncated or unsupported input is an absl::Status naming what
// is wrong; parsing never reads outside the mapped bytes.

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "kernels/tensor_type.h"

namespace pdserve::gguf {

// GGUF metadata value types (the file's numbering).
enum class ValueType : uint32_t {
  kU8 = 0, kI8 = 1, kU16 = 2, kI16 = 3, kU32 = 4, kI32 = 5, kF32 = 6, kBool = 7,
  kString = 8, kArray = 9, kU64 = 10, kI64 = 11, kF64 = 12,
};

// An array value: element type plus the elements, widened (integers to int64 or uint64 by
// signedness, floats to double, bools to uint64 0/1). String arrays are in `strings`.
struct ArrayValue {
  ValueType element_type = ValueType::kU8;
  std::vector<int64_t> ints;      // signed integer elements
  std::vector<uint64_t> uints;    // unsigned integer and bool elements
  std::vector<double> floats;     // f32/f64 elements
  std::vector<std::string> strings;
};

struct Value {
  ValueType type = ValueType::kU8;
  std::variant<uint64_t, int64_t, double, bool, std::string, ArrayValue> data;
};

// "u8", "string", "array", ... as the GGUF spec names the type; "type N" for an unknown id.
std::string ValueTypeName(ValueType type);

struct TensorInfo {
  std::string name;
  kernels::TensorType type;
  std::vector<int64_t> dims;  // ggml order: dims[0] is the innermost (row length)
  uint64_t offset = 0;        // from the start of the data section
  const uint8_t* data = nullptr;
  size_t n_bytes = 0;
  int64_t n_elements() const;
};

class GgufFile {
 public:
  // Opens and memory-maps `path`, parses and validates everything: tensor offsets aligned to
  // general.alignment (default 32), data ranges inside the file, known tensor types, row lengths
  // multiples of the type's block size.
  static absl::StatusOr<std::unique_ptr<GgufFile>> Open(const std::string& path);
  // Parses bytes already in memory (the fuzz target, tests). The caller keeps `bytes` alive.
  static absl::StatusOr<std::unique_ptr<GgufFile>> Parse(absl::Span<const uint8_t> bytes,
                                                         std::string display_name);
  ~GgufFile();

  uint32_t version() const;
  const std::map<std::string, Value, std::less<>>& metadata() const;
  const std::vector<TensorInfo>& tensors() const;

  const Value* Find(absl::string_view key) const;  // nullptr when absent
  const TensorInfo* FindTensor(absl::string_view name) const;

  // Typed getters: NotFound when absent, InvalidArgument naming the key when the type differs.
  // Integer getters accept any integer type whose value fits.
  absl::StatusOr<uint64_t> GetUint(absl::string_view key) const;
  absl::StatusOr<int64_t> GetInt(absl::string_view key) const;
  absl::StatusOr<double> GetFloat(absl::string_view key) const;  // f32 or f64
  absl::StatusOr<bool> GetBool(absl::string_view key) const;
  absl::StatusOr<std::string> GetString(absl::string_view key) const;
  absl::StatusOr<const ArrayValue*> GetArray(absl::string_view key) const;

  const std::string& display_name() const;

  // general.alignment, or 32 when absent.
  uint64_t alignment() const;
  // Where the tensor-info table ends, in bytes from the start of the file: [0, this) holds the
  // magic, version, counts, every metadata key/value and every tensor info, and nothing of the
  // tensor data. The data section's alignment padding follows.
  uint64_t tensor_info_end_offset() const;
  // Where the data section starts, in bytes from the start of the file.
  uint64_t data_section_offset() const;
  // The whole file.
  absl::Span<const uint8_t> bytes() const;

 private:
  GgufFile();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace pdserve::gguf
