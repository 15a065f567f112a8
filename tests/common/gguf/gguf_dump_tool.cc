// gguf_dump_tool FILE: prints a GGUF file's header, metadata and tensor table as JSON, for the
// Python cross-check against the reference `gguf` package (test_gguf_dump.py). Tensor data is
// summarized by an FNV-1a 64-bit hash of its stored bytes. Exits 1 with the reader's error on
// stderr when the file is invalid.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>

#include "common/gguf/gguf_file.h"

namespace {

using pdserve::gguf::ArrayValue;
using pdserve::gguf::GgufFile;
using pdserve::gguf::TensorInfo;
using pdserve::gguf::Value;
using pdserve::gguf::ValueType;

std::string JsonString(const std::string& s) {
  std::string out = "\"";
  for (unsigned char ch : s) {
    if (ch == '"' || ch == '\\') {
      out += '\\';
      out += static_cast<char>(ch);
    } else if (ch < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\u%04x", ch);
      out += buf;
    } else {
      out += static_cast<char>(ch);  // UTF-8 passes through
    }
  }
  return out + "\"";
}

std::string JsonDouble(double d) {
  if (std::isnan(d)) return "NaN";
  if (std::isinf(d)) return d > 0 ? "Infinity" : "-Infinity";
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.17g", d);
  return buf;
}

std::string JsonArray(const ArrayValue& a) {
  std::string out = "[";
  auto sep = [&](size_t i) {
    if (i > 0) out += ", ";
  };
  for (size_t i = 0; i < a.strings.size(); ++i) sep(i), out += JsonString(a.strings[i]);
  for (size_t i = 0; i < a.ints.size(); ++i) sep(i), out += std::to_string(a.ints[i]);
  for (size_t i = 0; i < a.floats.size(); ++i) sep(i), out += JsonDouble(a.floats[i]);
  for (size_t i = 0; i < a.uints.size(); ++i) {
    sep(i);
    out += a.element_type == ValueType::kBool ? (a.uints[i] ? "true" : "false")
                                               : std::to_string(a.uints[i]);
  }
  return out + "]";
}

std::string JsonValue(const Value& v) {
  std::string out = "{\"type\": " + JsonString(ValueTypeName(v.type));
  if (v.type == ValueType::kArray) {
    const ArrayValue& a = std::get<ArrayValue>(v.data);
    out += ", \"element_type\": " + JsonString(ValueTypeName(a.element_type));
    out += ", \"value\": " + JsonArray(a);
  } else if (const auto* u = std::get_if<uint64_t>(&v.data)) {
    out += ", \"value\": " + std::to_string(*u);
  } else if (const auto* i = std::get_if<int64_t>(&v.data)) {
    out += ", \"value\": " + std::to_string(*i);
  } else if (const auto* d = std::get_if<double>(&v.data)) {
    out += ", \"value\": " + JsonDouble(*d);
  } else if (const auto* b = std::get_if<bool>(&v.data)) {
    out += std::string(", \"value\": ") + (*b ? "true" : "false");
  } else {
    out += ", \"value\": " + JsonString(std::get<std::string>(v.data));
  }
  return out + "}";
}

uint64_t Fnv1a64(const uint8_t* data, size_t n) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < n; ++i) {
    h ^= data[i];
    h *= 0x100000001b3ull;
  }
  return h;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s FILE.gguf\n", argv[0]);
    return 2;
  }
  absl::StatusOr<std::unique_ptr<GgufFile>> file = GgufFile::Open(argv[1]);
  if (!file.ok()) {
    std::fprintf(stderr, "%s\n", std::string(file.status().message()).c_str());
    return 1;
  }
  const GgufFile& g = **file;
  std::string out = "{\n  \"version\": " + std::to_string(g.version()) +
                    ",\n  \"alignment\": " + std::to_string(g.alignment()) +
                    ",\n  \"data_section_offset\": " + std::to_string(g.data_section_offset()) +
                    ",\n  \"metadata\": {";
  bool first = true;
  for (const auto& [key, value] : g.metadata()) {
    out += first ? "\n    " : ",\n    ";
    first = false;
    out += JsonString(key) + ": " + JsonValue(value);
  }
  out += "\n  },\n  \"tensors\": [";
  first = true;
  for (const TensorInfo& t : g.tensors()) {
    out += first ? "\n    " : ",\n    ";
    first = false;
    out += "{\"name\": " + JsonString(t.name) + ", \"type\": " +
           JsonString(pdserve::kernels::GetTensorTypeInfo(t.type).name) +
           ", \"type_id\": " + std::to_string(static_cast<uint32_t>(t.type)) + ", \"dims\": [";
    for (size_t d = 0; d < t.dims.size(); ++d) {
      out += (d ? ", " : "") + std::to_string(t.dims[d]);
    }
    out += "], \"offset\": " + std::to_string(t.offset) +
           ", \"n_bytes\": " + std::to_string(t.n_bytes) +
           ", \"fnv1a64\": \"" + [&] {
             char buf[20];
             std::snprintf(buf, sizeof(buf), "%016llx",
                           static_cast<unsigned long long>(Fnv1a64(t.data, t.n_bytes)));
             return std::string(buf);
           }() + "\"}";
  }
  out += "\n  ]\n}\n";
  std::fwrite(out.data(), 1, out.size(), stdout);
  return 0;
}
