#include "common/gguf/gguf_file.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/gguf/mapped_file.h"

namespace pdserve::gguf {
namespace {

constexpr uint8_t kMagic[4] = {'G', 'G', 'U', 'F'};
constexpr uint64_t kDefaultAlignment = 32;
constexpr uint32_t kMaxDims = 4;
// Smallest encodings, used to bound counts by the bytes left before anything is allocated.
constexpr uint64_t kMinKvBytes = 8 + 4 + 1;               // key length, type, one u8 value
constexpr uint64_t kMinTensorInfoBytes = 8 + 4 + 8 + 4 + 8;  // name len, n_dims, dim, type, offset

bool IsPowerOfTwo(uint64_t x) { return x != 0 && (x & (x - 1)) == 0; }

// Bytes of one scalar element of `type`; 0 for string and array (variable length).
uint64_t ScalarBytes(ValueType type) {
  switch (type) {
    case ValueType::kU8:
    case ValueType::kI8:
    case ValueType::kBool:
      return 1;
    case ValueType::kU16:
    case ValueType::kI16:
      return 2;
    case ValueType::kU32:
    case ValueType::kI32:
    case ValueType::kF32:
      return 4;
    case ValueType::kU64:
    case ValueType::kI64:
    case ValueType::kF64:
      return 8;
    case ValueType::kString:
    case ValueType::kArray:
      return 0;
  }
  return 0;
}

bool IsKnownValueType(uint32_t id) { return id <= static_cast<uint32_t>(ValueType::kF64); }

bool IsUnsignedType(ValueType t) {
  return t == ValueType::kU8 || t == ValueType::kU16 || t == ValueType::kU32 ||
         t == ValueType::kU64;
}
bool IsSignedType(ValueType t) {
  return t == ValueType::kI8 || t == ValueType::kI16 || t == ValueType::kI32 ||
         t == ValueType::kI64;
}

// A bounds-checked little-endian cursor over the file. Every read checks the bytes left; errors
// name the file, the byte offset and what was being read.
class Cursor {
 public:
  Cursor(absl::Span<const uint8_t> bytes, const std::string& name) : bytes_(bytes), name_(name) {}

  uint64_t pos() const { return pos_; }
  uint64_t remaining() const { return bytes_.size() - pos_; }

  absl::Status Error(absl::string_view what) const {
    return absl::InvalidArgumentError(absl::StrCat(name_, ": ", what));
  }
  absl::Status Truncated(absl::string_view what) const {
    return Error(absl::StrCat("truncated at byte ", pos_, " reading ", what, " (file is ",
                              bytes_.size(), " bytes)"));
  }

  template <typename T>
  absl::Status Read(T* out, absl::string_view what) {
    if (remaining() < sizeof(T)) return Truncated(what);
    std::memcpy(out, bytes_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return absl::OkStatus();
  }

  absl::Status ReadString(std::string* out, absl::string_view what) {
    uint64_t len = 0;
    if (absl::Status s = Read(&len, what); !s.ok()) return s;
    if (len > remaining()) {
      return Error(absl::StrCat("string length ", len, " at byte ", pos_ - 8, " (", what,
                                ") exceeds the ", remaining(), " bytes left"));
    }
    out->assign(reinterpret_cast<const char*>(bytes_.data() + pos_), len);
    pos_ += len;
    return absl::OkStatus();
  }

 private:
  absl::Span<const uint8_t> bytes_;
  const std::string& name_;
  uint64_t pos_ = 0;
};

#define PDSERVE_RETURN_IF_ERROR(expr)           \
  do {                                          \
    if (absl::Status _s = (expr); !_s.ok()) {   \
      return _s;                                \
    }                                           \
  } while (0)

template <typename Stored, typename Widened>
absl::Status ReadWidened(Cursor& c, absl::string_view what, Widened* out) {
  Stored v{};
  PDSERVE_RETURN_IF_ERROR(c.Read(&v, what));
  *out = static_cast<Widened>(v);
  return absl::OkStatus();
}

// Reads one scalar of `type` into the widened representation: unsigned integers and bools into
// *u, signed integers into *i, floats into *f.
absl::Status ReadScalar(Cursor& c, ValueType type, absl::string_view what, uint64_t* u,
                        int64_t* i, double* f) {
  switch (type) {
    case ValueType::kU8: return ReadWidened<uint8_t>(c, what, u);
    case ValueType::kI8: return ReadWidened<int8_t>(c, what, i);
    case ValueType::kU16: return ReadWidened<uint16_t>(c, what, u);
    case ValueType::kI16: return ReadWidened<int16_t>(c, what, i);
    case ValueType::kU32: return ReadWidened<uint32_t>(c, what, u);
    case ValueType::kI32: return ReadWidened<int32_t>(c, what, i);
    case ValueType::kU64: return ReadWidened<uint64_t>(c, what, u);
    case ValueType::kI64: return ReadWidened<int64_t>(c, what, i);
    case ValueType::kF32: return ReadWidened<float>(c, what, f);
    case ValueType::kF64: return ReadWidened<double>(c, what, f);
    case ValueType::kBool: {
      PDSERVE_RETURN_IF_ERROR(ReadWidened<uint8_t>(c, what, u));
      if (*u > 1) {
        return c.Error(absl::StrCat(what, ": invalid bool byte ", *u, " at byte ", c.pos() - 1));
      }
      return absl::OkStatus();
    }
    case ValueType::kString:
    case ValueType::kArray:
      break;
  }
  return c.Error(absl::StrCat(what, ": not a scalar type"));
}

absl::Status ReadArray(Cursor& c, const std::string& key, ArrayValue* out) {
  const std::string what = absl::StrCat("key '", key, "'");
  uint32_t type_id = 0;
  PDSERVE_RETURN_IF_ERROR(c.Read(&type_id, absl::StrCat(what, " array element type")));
  if (!IsKnownValueType(type_id)) {
    return c.Error(absl::StrCat(what, ": unknown array element type ", type_id));
  }
  const auto type = static_cast<ValueType>(type_id);
  if (type == ValueType::kArray) {
    return c.Error(absl::StrCat(what, ": arrays of arrays are not supported"));
  }
  out->element_type = type;
  uint64_t count = 0;
  PDSERVE_RETURN_IF_ERROR(c.Read(&count, absl::StrCat(what, " array length")));
  const uint64_t min_elem_bytes = type == ValueType::kString ? 8 : ScalarBytes(type);
  if (count > c.remaining() / min_elem_bytes) {
    return c.Error(absl::StrCat(what, ": array of ", count, " ", ValueTypeName(type),
                                " elements does not fit in the ", c.remaining(),
                                " bytes left"));
  }
  const std::string elem_what = absl::StrCat(what, " array element");
  if (type == ValueType::kString) {
    out->strings.resize(count);
    for (uint64_t k = 0; k < count; ++k) {
      PDSERVE_RETURN_IF_ERROR(c.ReadString(&out->strings[k], elem_what));
    }
    return absl::OkStatus();
  }
  if (IsSignedType(type)) {
    out->ints.resize(count);
  } else if (type == ValueType::kF32 || type == ValueType::kF64) {
    out->floats.resize(count);
  } else {
    out->uints.resize(count);
  }
  for (uint64_t k = 0; k < count; ++k) {
    uint64_t u = 0;
    int64_t i = 0;
    double f = 0;
    PDSERVE_RETURN_IF_ERROR(ReadScalar(c, type, elem_what, &u, &i, &f));
    if (IsSignedType(type)) {
      out->ints[k] = i;
    } else if (type == ValueType::kF32 || type == ValueType::kF64) {
      out->floats[k] = f;
    } else {
      out->uints[k] = u;
    }
  }
  return absl::OkStatus();
}

absl::Status ReadValue(Cursor& c, const std::string& key, Value* out) {
  uint32_t type_id = 0;
  PDSERVE_RETURN_IF_ERROR(c.Read(&type_id, absl::StrCat("key '", key, "' value type")));
  if (!IsKnownValueType(type_id)) {
    return c.Error(absl::StrCat("key '", key, "': unknown value type ", type_id));
  }
  out->type = static_cast<ValueType>(type_id);
  const std::string what = absl::StrCat("key '", key, "' value");
  switch (out->type) {
    case ValueType::kString: {
      std::string s;
      PDSERVE_RETURN_IF_ERROR(c.ReadString(&s, what));
      out->data = std::move(s);
      return absl::OkStatus();
    }
    case ValueType::kArray: {
      ArrayValue a;
      PDSERVE_RETURN_IF_ERROR(ReadArray(c, key, &a));
      out->data = std::move(a);
      return absl::OkStatus();
    }
    default:
      break;
  }
  uint64_t u = 0;
  int64_t i = 0;
  double f = 0;
  PDSERVE_RETURN_IF_ERROR(ReadScalar(c, out->type, what, &u, &i, &f));
  if (out->type == ValueType::kBool) {
    out->data = u != 0;
  } else if (IsSignedType(out->type)) {
    out->data = i;
  } else if (IsUnsignedType(out->type)) {
    out->data = u;
  } else {
    out->data = f;
  }
  return absl::OkStatus();
}

}  // namespace

std::string ValueTypeName(ValueType type) {
  switch (type) {
    case ValueType::kU8: return "u8";
    case ValueType::kI8: return "i8";
    case ValueType::kU16: return "u16";
    case ValueType::kI16: return "i16";
    case ValueType::kU32: return "u32";
    case ValueType::kI32: return "i32";
    case ValueType::kF32: return "f32";
    case ValueType::kBool: return "bool";
    case ValueType::kString: return "string";
    case ValueType::kArray: return "array";
    case ValueType::kU64: return "u64";
    case ValueType::kI64: return "i64";
    case ValueType::kF64: return "f64";
  }
  return absl::StrCat("type ", static_cast<uint32_t>(type));
}

int64_t TensorInfo::n_elements() const {
  int64_t n = 1;
  for (int64_t d : dims) n *= d;  // validated at parse time not to overflow
  return n;
}

struct GgufFile::Impl {
  std::string display_name;
  std::unique_ptr<MappedFile> mapping;  // null for Parse()
  absl::Span<const uint8_t> bytes;
  uint32_t version = 0;
  uint64_t alignment = kDefaultAlignment;
  uint64_t tensor_info_end_offset = 0;
  uint64_t data_section_offset = 0;
  std::map<std::string, Value, std::less<>> metadata;
  std::vector<TensorInfo> tensors;
  std::map<std::string, size_t, std::less<>> tensor_index;

  absl::Status Parse();
  absl::Status ParseTensorInfo(Cursor& c, uint64_t index, TensorInfo* t);
};

absl::Status GgufFile::Impl::Parse() {
  Cursor c(bytes, display_name);
  uint8_t magic[4];
  for (uint8_t& b : magic) PDSERVE_RETURN_IF_ERROR(c.Read(&b, "the magic"));
  if (std::memcmp(magic, kMagic, 4) != 0) {
    return c.Error(absl::StrCat("not a GGUF file (magic bytes ", magic[0], " ", magic[1], " ",
                                magic[2], " ", magic[3], ", expected 'GGUF')"));
  }
  PDSERVE_RETURN_IF_ERROR(c.Read(&version, "the version"));
  if (version != 2 && version != 3) {
    return c.Error(absl::StrCat("GGUF version ", version,
                                " is not supported (only versions 2 and 3)"));
  }
  uint64_t n_tensors = 0;
  uint64_t n_kv = 0;
  PDSERVE_RETURN_IF_ERROR(c.Read(&n_tensors, "the tensor count"));
  PDSERVE_RETURN_IF_ERROR(c.Read(&n_kv, "the metadata key/value count"));
  if (n_kv > c.remaining() / kMinKvBytes) {
    return c.Error(absl::StrCat("metadata count ", n_kv, " cannot fit in the ", c.remaining(),
                                " bytes left"));
  }
  if (n_tensors > c.remaining() / kMinTensorInfoBytes) {
    return c.Error(absl::StrCat("tensor count ", n_tensors, " cannot fit in the ",
                                c.remaining(), " bytes left"));
  }

  for (uint64_t k = 0; k < n_kv; ++k) {
    std::string key;
    PDSERVE_RETURN_IF_ERROR(c.ReadString(&key, absl::StrCat("metadata key #", k)));
    Value value;
    PDSERVE_RETURN_IF_ERROR(ReadValue(c, key, &value));
    if (metadata.count(key) != 0) {
      return c.Error(absl::StrCat("duplicate metadata key '", key, "'"));
    }
    metadata.emplace(std::move(key), std::move(value));
  }

  if (auto it = metadata.find("general.alignment"); it != metadata.end()) {
    const Value& v = it->second;
    uint64_t a = 0;
    if (IsUnsignedType(v.type)) {
      a = std::get<uint64_t>(v.data);
    } else if (IsSignedType(v.type)) {
      a = std::get<int64_t>(v.data) > 0 ? static_cast<uint64_t>(std::get<int64_t>(v.data)) : 0;
    } else {
      return c.Error(absl::StrCat("general.alignment has type ", ValueTypeName(v.type),
                                  ", expected an integer"));
    }
    if (!IsPowerOfTwo(a)) {
      return c.Error(absl::StrCat("general.alignment ", a, " is not a power of two"));
    }
    alignment = a;
  }

  tensors.resize(n_tensors);
  for (uint64_t k = 0; k < n_tensors; ++k) {
    PDSERVE_RETURN_IF_ERROR(ParseTensorInfo(c, k, &tensors[k]));
    if (!tensor_index.emplace(tensors[k].name, k).second) {
      return c.Error(absl::StrCat("duplicate tensor name '", tensors[k].name, "'"));
    }
  }

  tensor_info_end_offset = c.pos();
  // The data section starts at the next multiple of the alignment.
  const uint64_t pad = (alignment - c.pos() % alignment) % alignment;
  if (c.pos() > std::numeric_limits<uint64_t>::max() - pad) {
    return c.Error("data section offset overflows");
  }
  data_section_offset = c.pos() + pad;
  const uint64_t file_size = bytes.size();

  for (TensorInfo& t : tensors) {
    const uint64_t data_bytes =
        file_size > data_section_offset ? file_size - data_section_offset : 0;
    if (t.offset > data_bytes || t.n_bytes > data_bytes - t.offset) {
      return c.Error(absl::StrCat("tensor '", t.name, "': data at offset ", t.offset, " (",
                                  t.n_bytes, " bytes) extends past the end of the file (the data "
                                  "section starts at byte ", data_section_offset, " and holds ",
                                  data_bytes, " bytes)"));
    }
    t.data = bytes.data() + data_section_offset + t.offset;
  }

  // Tensors must not overlap: a corrupt table could otherwise alias two weights.
  std::vector<const TensorInfo*> by_offset;
  by_offset.reserve(tensors.size());
  for (const TensorInfo& t : tensors) by_offset.push_back(&t);
  std::sort(by_offset.begin(), by_offset.end(),
            [](const TensorInfo* a, const TensorInfo* b) { return a->offset < b->offset; });
  for (size_t k = 1; k < by_offset.size(); ++k) {
    const TensorInfo* prev = by_offset[k - 1];
    if (by_offset[k]->offset < prev->offset + prev->n_bytes) {
      return c.Error(absl::StrCat("tensors '", prev->name, "' and '", by_offset[k]->name,
                                  "' overlap in the data section"));
    }
  }
  return absl::OkStatus();
}

absl::Status GgufFile::Impl::ParseTensorInfo(Cursor& c, uint64_t index, TensorInfo* t) {
  PDSERVE_RETURN_IF_ERROR(c.ReadString(&t->name, absl::StrCat("the name of tensor #", index)));
  const std::string what = absl::StrCat("tensor '", t->name, "'");
  if (t->name.empty()) return c.Error(absl::StrCat("tensor #", index, " has an empty name"));
  uint32_t n_dims = 0;
  PDSERVE_RETURN_IF_ERROR(c.Read(&n_dims, absl::StrCat(what, " dimension count")));
  if (n_dims < 1 || n_dims > kMaxDims) {
    return c.Error(absl::StrCat(what, ": ", n_dims, " dimensions (must be 1 to ", kMaxDims, ")"));
  }
  t->dims.resize(n_dims);
  int64_t n_elements = 1;
  for (uint32_t d = 0; d < n_dims; ++d) {
    uint64_t dim = 0;
    PDSERVE_RETURN_IF_ERROR(c.Read(&dim, absl::StrCat(what, " dimension ", d)));
    if (dim == 0 || dim > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return c.Error(absl::StrCat(what, ": dimension ", d, " is ", dim,
                                  " (must be positive and at most 2^63-1)"));
    }
    t->dims[d] = static_cast<int64_t>(dim);
    if (__builtin_mul_overflow(n_elements, t->dims[d], &n_elements)) {
      return c.Error(absl::StrCat(what, ": element count overflows 64 bits"));
    }
  }
  uint32_t type_id = 0;
  PDSERVE_RETURN_IF_ERROR(c.Read(&type_id, absl::StrCat(what, " type")));
  const kernels::TensorTypeInfo* info = kernels::FindTensorType(type_id);
  if (info == nullptr) {
    return c.Error(absl::StrCat(what, ": type ", type_id, " is not supported"));
  }
  t->type = info->type;
  if (t->dims[0] % info->block_elems != 0) {
    return c.Error(absl::StrCat(what, ": row length ", t->dims[0],
                                " is not a multiple of the ", info->name, " block size ",
                                info->block_elems));
  }
  int64_t n_bytes = 0;
  if (__builtin_mul_overflow(n_elements / info->block_elems, info->block_bytes, &n_bytes)) {
    return c.Error(absl::StrCat(what, ": byte size overflows 64 bits"));
  }
  t->n_bytes = static_cast<size_t>(n_bytes);
  PDSERVE_RETURN_IF_ERROR(c.Read(&t->offset, absl::StrCat(what, " data offset")));
  if (t->offset % alignment != 0) {
    return c.Error(absl::StrCat(what, ": data offset ", t->offset,
                                " is not a multiple of the alignment ", alignment));
  }
  return absl::OkStatus();
}

GgufFile::GgufFile() : impl_(std::make_unique<Impl>()) {}
GgufFile::~GgufFile() = default;

absl::StatusOr<std::unique_ptr<GgufFile>> GgufFile::Open(const std::string& path) {
  absl::StatusOr<std::unique_ptr<MappedFile>> mapping = MappedFile::Open(path);
  if (!mapping.ok()) return mapping.status();
  std::unique_ptr<GgufFile> file(new GgufFile());
  file->impl_->display_name = path;
  file->impl_->bytes = (*mapping)->bytes();
  file->impl_->mapping = *std::move(mapping);
  PDSERVE_RETURN_IF_ERROR(file->impl_->Parse());
  return file;
}

absl::StatusOr<std::unique_ptr<GgufFile>> GgufFile::Parse(absl::Span<const uint8_t> bytes,
                                                          std::string display_name) {
  std::unique_ptr<GgufFile> file(new GgufFile());
  file->impl_->display_name = std::move(display_name);
  file->impl_->bytes = bytes;
  PDSERVE_RETURN_IF_ERROR(file->impl_->Parse());
  return file;
}

uint32_t GgufFile::version() const { return impl_->version; }
const std::map<std::string, Value, std::less<>>& GgufFile::metadata() const {
  return impl_->metadata;
}
const std::vector<TensorInfo>& GgufFile::tensors() const { return impl_->tensors; }
const std::string& GgufFile::display_name() const { return impl_->display_name; }
uint64_t GgufFile::alignment() const { return impl_->alignment; }
uint64_t GgufFile::tensor_info_end_offset() const { return impl_->tensor_info_end_offset; }
uint64_t GgufFile::data_section_offset() const { return impl_->data_section_offset; }
absl::Span<const uint8_t> GgufFile::bytes() const { return impl_->bytes; }

const Value* GgufFile::Find(absl::string_view key) const {
  auto it = impl_->metadata.find(key);
  return it == impl_->metadata.end() ? nullptr : &it->second;
}

const TensorInfo* GgufFile::FindTensor(absl::string_view name) const {
  auto it = impl_->tensor_index.find(name);
  return it == impl_->tensor_index.end() ? nullptr : &impl_->tensors[it->second];
}

namespace {

absl::Status NotFound(const std::string& file, absl::string_view key) {
  return absl::NotFoundError(absl::StrCat(file, ": metadata key '", key, "' is missing"));
}

absl::Status WrongType(const std::string& file, absl::string_view key, ValueType actual,
                       absl::string_view expected) {
  return absl::InvalidArgumentError(absl::StrCat(file, ": metadata key '", key, "' has type ",
                                                 ValueTypeName(actual), ", expected ", expected));
}

}  // namespace

absl::StatusOr<uint64_t> GgufFile::GetUint(absl::string_view key) const {
  const Value* v = Find(key);
  if (v == nullptr) return NotFound(display_name(), key);
  if (IsUnsignedType(v->type)) return std::get<uint64_t>(v->data);
  if (IsSignedType(v->type)) {
    const int64_t i = std::get<int64_t>(v->data);
    if (i >= 0) return static_cast<uint64_t>(i);
    return absl::InvalidArgumentError(absl::StrCat(display_name(), ": metadata key '", key,
                                                   "' is ", i, ", expected a non-negative value"));
  }
  return WrongType(display_name(), key, v->type, "an unsigned integer");
}

absl::StatusOr<int64_t> GgufFile::GetInt(absl::string_view key) const {
  const Value* v = Find(key);
  if (v == nullptr) return NotFound(display_name(), key);
  if (IsSignedType(v->type)) return std::get<int64_t>(v->data);
  if (IsUnsignedType(v->type)) {
    const uint64_t u = std::get<uint64_t>(v->data);
    if (u <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return static_cast<int64_t>(u);
    }
    return absl::InvalidArgumentError(absl::StrCat(display_name(), ": metadata key '", key,
                                                   "' is ", u, ", too large for an int64"));
  }
  return WrongType(display_name(), key, v->type, "an integer");
}

absl::StatusOr<double> GgufFile::GetFloat(absl::string_view key) const {
  const Value* v = Find(key);
  if (v == nullptr) return NotFound(display_name(), key);
  if (v->type == ValueType::kF32 || v->type == ValueType::kF64) return std::get<double>(v->data);
  return WrongType(display_name(), key, v->type, "f32 or f64");
}

absl::StatusOr<bool> GgufFile::GetBool(absl::string_view key) const {
  const Value* v = Find(key);
  if (v == nullptr) return NotFound(display_name(), key);
  if (v->type == ValueType::kBool) return std::get<bool>(v->data);
  return WrongType(display_name(), key, v->type, "bool");
}

absl::StatusOr<std::string> GgufFile::GetString(absl::string_view key) const {
  const Value* v = Find(key);
  if (v == nullptr) return NotFound(display_name(), key);
  if (v->type == ValueType::kString) return std::get<std::string>(v->data);
  return WrongType(display_name(), key, v->type, "string");
}

absl::StatusOr<const ArrayValue*> GgufFile::GetArray(absl::string_view key) const {
  const Value* v = Find(key);
  if (v == nullptr) return NotFound(display_name(), key);
  if (v->type == ValueType::kArray) return &std::get<ArrayValue>(v->data);
  return WrongType(display_name(), key, v->type, "array");
}

}  // namespace pdserve::gguf
