#include "tests/common/gguf/gguf_builder.h"

#include <algorithm>
#include <cstring>
#include <random>

#include "kernels/tensor_type.h"

namespace pdserve::gguf::testing {
namespace {

template <typename T>
void Put(std::vector<uint8_t>& out, T v) {
  const size_t at = out.size();
  out.resize(at + sizeof(T));
  std::memcpy(out.data() + at, &v, sizeof(T));
}

void PutString(std::vector<uint8_t>& out, const std::string& s) {
  Put<uint64_t>(out, s.size());
  out.insert(out.end(), s.begin(), s.end());
}

uint16_t ToF16(float f) {
  // Test values are small normals: truncating conversion is exact enough for a fixture.
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint32_t sign = (x >> 16) & 0x8000;
  const int32_t exp = static_cast<int32_t>((x >> 23) & 0xff) - 127 + 15;
  if (exp <= 0) return static_cast<uint16_t>(sign);
  return static_cast<uint16_t>(sign | (exp << 10) | ((x >> 13) & 0x3ff));
}

}  // namespace

GgufBuilder& GgufBuilder::Scalar(const std::string& key, uint32_t type_id, const void* v,
                                 size_t n) {
  std::vector<uint8_t> bytes(n);
  std::memcpy(bytes.data(), v, n);
  return SetRaw(key, type_id, std::move(bytes));
}

GgufBuilder& GgufBuilder::SetString(const std::string& key, const std::string& v) {
  std::vector<uint8_t> bytes;
  PutString(bytes, v);
  return SetRaw(key, 8, std::move(bytes));
}

GgufBuilder& GgufBuilder::SetStringArray(const std::string& key,
                                         const std::vector<std::string>& v) {
  std::vector<uint8_t> bytes;
  Put<uint32_t>(bytes, 8);
  Put<uint64_t>(bytes, v.size());
  for (const std::string& s : v) PutString(bytes, s);
  return SetRaw(key, 9, std::move(bytes));
}

GgufBuilder& GgufBuilder::SetF32Array(const std::string& key, const std::vector<float>& v) {
  std::vector<uint8_t> bytes;
  Put<uint32_t>(bytes, 6);
  Put<uint64_t>(bytes, v.size());
  for (float f : v) Put(bytes, f);
  return SetRaw(key, 9, std::move(bytes));
}

GgufBuilder& GgufBuilder::SetI32Array(const std::string& key, const std::vector<int32_t>& v) {
  std::vector<uint8_t> bytes;
  Put<uint32_t>(bytes, 5);
  Put<uint64_t>(bytes, v.size());
  for (int32_t i : v) Put(bytes, i);
  return SetRaw(key, 9, std::move(bytes));
}

GgufBuilder& GgufBuilder::SetRaw(const std::string& key, uint32_t type_id,
                                 std::vector<uint8_t> value) {
  for (Kv& kv : kvs_) {
    if (kv.key == key) {
      kv.type_id = type_id;
      kv.value = std::move(value);
      return *this;
    }
  }
  kvs_.push_back({key, type_id, std::move(value)});
  return *this;
}

GgufBuilder& GgufBuilder::RemoveKey(const std::string& key) {
  kvs_.erase(std::remove_if(kvs_.begin(), kvs_.end(), [&](const Kv& kv) { return kv.key == key; }),
             kvs_.end());
  return *this;
}

GgufBuilder& GgufBuilder::AddTensor(const std::string& name, uint32_t type_id,
                                    std::vector<uint64_t> dims, std::vector<uint8_t> data) {
  if (data.empty()) {
    const kernels::TensorTypeInfo* info = kernels::FindTensorType(type_id);
    uint64_t n = 1;
    for (uint64_t d : dims) n *= d;
    data.assign(info ? n / info->block_elems * info->block_bytes : 4, 0);
  }
  tensors_.push_back({name, type_id, std::move(dims), std::move(data), std::nullopt});
  return *this;
}

GgufBuilder& GgufBuilder::AddF32Tensor(const std::string& name, std::vector<uint64_t> dims,
                                       const std::vector<float>& values) {
  std::vector<uint8_t> data(values.size() * 4);
  std::memcpy(data.data(), values.data(), data.size());
  return AddTensor(name, 0, std::move(dims), std::move(data));
}

GgufBuilder::Tensor* GgufBuilder::FindTensor(const std::string& name) {
  for (Tensor& t : tensors_) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

GgufBuilder& GgufBuilder::RemoveTensor(const std::string& name) {
  tensors_.erase(std::remove_if(tensors_.begin(), tensors_.end(),
                                [&](const Tensor& t) { return t.name == name; }),
                 tensors_.end());
  return *this;
}

std::vector<uint8_t> GgufBuilder::Build() const {
  auto align = [&](uint64_t x) { return (x + alignment_ - 1) / alignment_ * alignment_; };
  std::vector<uint8_t> out = {'G', 'G', 'U', 'F'};
  Put<uint32_t>(out, version_);
  Put<uint64_t>(out, tensor_count_override_.value_or(tensors_.size()));
  Put<uint64_t>(out, kv_count_override_.value_or(kvs_.size()));
  for (const Kv& kv : kvs_) {
    PutString(out, kv.key);
    Put<uint32_t>(out, kv.type_id);
    out.insert(out.end(), kv.value.begin(), kv.value.end());
  }
  std::vector<uint64_t> offsets;
  uint64_t next = 0;
  for (const Tensor& t : tensors_) {
    // An explicit offset (a test placing a tensor out of range) does not grow the data section.
    const uint64_t offset = t.offset.value_or(align(next));
    offsets.push_back(offset);
    if (!t.offset) next = offset + t.data.size();
    PutString(out, t.name);
    Put<uint32_t>(out, static_cast<uint32_t>(t.dims.size()));
    for (uint64_t d : t.dims) Put<uint64_t>(out, d);
    Put<uint32_t>(out, t.type_id);
    Put<uint64_t>(out, offset);
  }
  if (tensors_.empty()) return out;
  const size_t data_start = align(out.size());
  out.resize(data_start + next, 0);
  for (size_t k = 0; k < tensors_.size(); ++k) {
    const Tensor& t = tensors_[k];
    // A tensor placed past the end by a test has no data written.
    if (offsets[k] <= next && t.data.size() <= next - offsets[k]) {
      std::copy(t.data.begin(), t.data.end(), out.begin() + data_start + offsets[k]);
    }
  }
  return out;
}

GgufBuilder TinyLlamaGguf(const TinyLlamaSpec& s) {
  std::mt19937 rng(1234);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  auto random_f32 = [&](uint64_t n) {
    std::vector<float> v(n);
    for (float& x : v) x = dist(rng);
    return v;
  };
  auto norm = [&](GgufBuilder& b, const std::string& name) {
    std::vector<float> v = random_f32(s.dim);
    if (s.norm_type_id == 0) {
      b.AddF32Tensor(name, {static_cast<uint64_t>(s.dim)}, v);
      return;
    }
    std::vector<uint8_t> data(2 * v.size());
    for (size_t i = 0; i < v.size(); ++i) {
      uint32_t bits;
      std::memcpy(&bits, &v[i], 4);
      const uint16_t h = s.norm_type_id == 30 ? static_cast<uint16_t>(bits >> 16) : ToF16(v[i]);
      std::memcpy(&data[2 * i], &h, 2);
    }
    b.AddTensor(name, s.norm_type_id, {static_cast<uint64_t>(s.dim)}, std::move(data));
  };
  const uint64_t dim = s.dim, hidden = s.hidden_dim, vocab = s.vocab_size;
  const uint64_t head_dim = dim / s.n_heads, kv_dim = head_dim * s.n_kv_heads;
  GgufBuilder b;
  b.SetString("general.architecture", "llama")
      .SetString("general.name", "tiny")
      .SetU32("llama.block_count", s.n_layers)
      .SetU32("llama.context_length", s.context_length)
      .SetU32("llama.embedding_length", s.dim)
      .SetU32("llama.feed_forward_length", s.hidden_dim)
      .SetU32("llama.attention.head_count", s.n_heads)
      .SetU32("llama.attention.head_count_kv", s.n_kv_heads)
      .SetF32("llama.attention.layer_norm_rms_epsilon", 1e-6f);
  b.AddF32Tensor("token_embd.weight", {dim, vocab}, random_f32(dim * vocab));
  for (int i = 0; i < s.n_layers; ++i) {
    const std::string p = "blk." + std::to_string(i) + ".";
    norm(b, p + "attn_norm.weight");
    b.AddF32Tensor(p + "attn_q.weight", {dim, dim}, random_f32(dim * dim));
    b.AddF32Tensor(p + "attn_k.weight", {dim, kv_dim}, random_f32(dim * kv_dim));
    b.AddF32Tensor(p + "attn_v.weight", {dim, kv_dim}, random_f32(dim * kv_dim));
    b.AddF32Tensor(p + "attn_output.weight", {dim, dim}, random_f32(dim * dim));
    norm(b, p + "ffn_norm.weight");
    b.AddF32Tensor(p + "ffn_gate.weight", {dim, hidden}, random_f32(dim * hidden));
    b.AddF32Tensor(p + "ffn_down.weight", {hidden, dim}, random_f32(dim * hidden));
    b.AddF32Tensor(p + "ffn_up.weight", {dim, hidden}, random_f32(dim * hidden));
  }
  norm(b, "output_norm.weight");
  if (s.separate_output) b.AddF32Tensor("output.weight", {dim, vocab}, random_f32(dim * vocab));
  return b;
}

}  // namespace pdserve::gguf::testing
