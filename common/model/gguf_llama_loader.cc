#include "common/model/gguf_llama_loader.h"

#include <cmath>
#include <limits>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "kernels/cpu/dequantize.h"

namespace pdserve::model {
namespace {

using gguf::GgufFile;
using gguf::TensorInfo;

absl::Status Error(const GgufFile& f, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(f.display_name(), ": ", what));
}

// An integer hyper-parameter that must fit an int; `fallback` when absent (or required when
// fallback < 0).
absl::StatusOr<int> IntParam(const GgufFile& f, const std::string& key, int64_t fallback = -1) {
  absl::StatusOr<int64_t> v = f.GetInt(key);
  if (absl::IsNotFound(v.status()) && fallback >= 0) return static_cast<int>(fallback);
  if (!v.ok()) return v.status();
  if (*v <= 0 || *v > std::numeric_limits<int>::max()) {
    return Error(f, absl::StrCat("metadata key '", key, "' is ", *v,
                                 ", expected a positive 32-bit integer"));
  }
  return static_cast<int>(*v);
}

absl::StatusOr<float> FloatParam(const GgufFile& f, const std::string& key, float fallback) {
  absl::StatusOr<double> v = f.GetFloat(key);
  if (absl::IsNotFound(v.status())) return fallback;
  if (!v.ok()) return v.status();
  return static_cast<float>(*v);
}

std::string Shape(const std::vector<int64_t>& dims) {
  return absl::StrCat("[", absl::StrJoin(dims, ", "), "]");
}

// Looks up `name` and checks its ggml-order shape (dims[0] innermost); trailing dimensions of 1
// in the file are accepted.
absl::StatusOr<const TensorInfo*> FindShaped(const GgufFile& f, const std::string& name,
                                             const std::vector<int64_t>& expected) {
  const TensorInfo* t = f.FindTensor(name);
  if (t == nullptr) {
    return absl::NotFoundError(absl::StrCat(f.display_name(), ": tensor '", name, "' is missing"));
  }
  bool ok = t->dims.size() >= expected.size();
  for (size_t d = 0; ok && d < t->dims.size(); ++d) {
    ok = t->dims[d] == (d < expected.size() ? expected[d] : 1);
  }
  if (!ok) {
    return Error(f, absl::StrCat("tensor '", name, "': shape ", Shape(t->dims), ", expected ",
                                 Shape(expected), " (ggml order, row length first)"));
  }
  return t;
}

// Builds WeightMatrix views and norm vectors, adding each tensor's stored bytes to weight_bytes.
class WeightReader {
 public:
  explicit WeightReader(const GgufFile& f) : f_(f) {}

  absl::StatusOr<kernels::WeightMatrix> Matrix(const std::string& name, int64_t rows,
                                               int64_t cols) {
    absl::StatusOr<const TensorInfo*> t = FindShaped(f_, name, {cols, rows});
    if (!t.ok()) return t.status();
    const kernels::TensorTypeInfo& info = kernels::GetTensorTypeInfo((*t)->type);
    kernels::WeightMatrix m;
    m.type = (*t)->type;
    m.data = (*t)->data;
    m.rows = rows;
    m.cols = cols;
    m.row_bytes = kernels::RowBytes(info, cols);
    weight_bytes += (*t)->n_bytes;
    return m;
  }

  absl::StatusOr<std::vector<float>> Vector(const std::string& name, int64_t n) {
    absl::StatusOr<const TensorInfo*> t = FindShaped(f_, name, {n});
    if (!t.ok()) return t.status();
    std::vector<float> v(n);
    switch ((*t)->type) {
      case kernels::TensorType::kF32:
      case kernels::TensorType::kF16:
      case kernels::TensorType::kBF16:
        kernels::Dequantize((*t)->type, (*t)->data, v.data(), n, kernels::Isa::kScalar);
        break;
      default:
        return Error(f_, absl::StrCat("tensor '", name, "': type ",
                                      kernels::GetTensorTypeInfo((*t)->type).name,
                                      " is not supported for a norm vector (f32, f16 or bf16)"));
    }
    weight_bytes += (*t)->n_bytes;
    return v;
  }

  size_t weight_bytes = 0;

 private:
  const GgufFile& f_;
};

#define PDSERVE_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                                  \
  if (!tmp.ok()) return tmp.status();                 \
  lhs = *std::move(tmp)
#define PDSERVE_CONCAT_INNER(a, b) a##b
#define PDSERVE_CONCAT(a, b) PDSERVE_CONCAT_INNER(a, b)
#define PDSERVE_ASSIGN_OR_RETURN(lhs, expr) \
  PDSERVE_ASSIGN_OR_RETURN_IMPL(PDSERVE_CONCAT(status_or_, __LINE__), lhs, expr)

}  // namespace

absl::StatusOr<ModelConfig> ReadGgufLlamaConfig(const GgufFile& f) {
  absl::StatusOr<std::string> arch = f.GetString("general.architecture");
  if (!arch.ok()) return arch.status();
  if (*arch != "llama") {
    return Error(f, absl::StrCat("architecture '", *arch, "' is not supported (only 'llama')"));
  }
  ModelConfig c;
  c.architecture = *arch;
  PDSERVE_ASSIGN_OR_RETURN(c.n_layers, IntParam(f, "llama.block_count"));
  PDSERVE_ASSIGN_OR_RETURN(c.dim, IntParam(f, "llama.embedding_length"));
  PDSERVE_ASSIGN_OR_RETURN(c.hidden_dim, IntParam(f, "llama.feed_forward_length"));
  PDSERVE_ASSIGN_OR_RETURN(c.n_heads, IntParam(f, "llama.attention.head_count"));
  PDSERVE_ASSIGN_OR_RETURN(c.n_kv_heads, IntParam(f, "llama.attention.head_count_kv", c.n_heads));
  PDSERVE_ASSIGN_OR_RETURN(c.context_length, IntParam(f, "llama.context_length"));
  c.head_dim = c.dim / c.n_heads;
  PDSERVE_ASSIGN_OR_RETURN(c.rotary_dim, IntParam(f, "llama.rope.dimension_count", c.head_dim));
  PDSERVE_ASSIGN_OR_RETURN(c.rope_base, FloatParam(f, "llama.rope.freq_base", 10000.0f));
  PDSERVE_ASSIGN_OR_RETURN(c.rms_eps,
                           FloatParam(f, "llama.attention.layer_norm_rms_epsilon", 1e-5f));
  // Models whose head size is not dim / n_heads are not supported.
  for (const char* key : {"llama.attention.key_length", "llama.attention.value_length"}) {
    absl::StatusOr<int> len = IntParam(f, key, c.head_dim);
    if (!len.ok()) return len.status();
    if (*len != c.head_dim) {
      return Error(f, absl::StrCat(key, " ", *len, " differs from embedding_length / head_count ",
                                   c.head_dim, ", which is not supported"));
    }
  }
  const TensorInfo* embd = f.FindTensor("token_embd.weight");
  if (embd == nullptr) {
    return absl::NotFoundError(
        absl::StrCat(f.display_name(), ": tensor 'token_embd.weight' is missing"));
  }
  if (embd->dims.size() < 2 || embd->dims[1] > std::numeric_limits<int>::max()) {
    return Error(f, absl::StrCat("tensor 'token_embd.weight': shape ", Shape(embd->dims),
                                 ", expected [", c.dim, ", vocab_size]"));
  }
  c.vocab_size = static_cast<int>(embd->dims[1]);
  if (absl::StatusOr<int64_t> v = f.GetInt("llama.vocab_size"); v.ok() && *v != c.vocab_size) {
    return Error(f, absl::StrCat("llama.vocab_size ", *v, " differs from token_embd.weight's ",
                                 c.vocab_size, " rows"));
  } else if (!v.ok() && !absl::IsNotFound(v.status())) {
    return v.status();
  }
  if (absl::Status s = ValidateModelConfig(c, f.display_name()); !s.ok()) return s;
  return c;
}

absl::StatusOr<ModelWeights> LoadGgufLlama(std::shared_ptr<const GgufFile> file) {
  const GgufFile& f = *file;
  ModelWeights w;
  PDSERVE_ASSIGN_OR_RETURN(w.config, ReadGgufLlamaConfig(f));
  const ModelConfig& c = w.config;
  const int64_t q_dim = static_cast<int64_t>(c.n_heads) * c.head_dim;
  const int64_t kv_dim = static_cast<int64_t>(c.n_kv_heads) * c.head_dim;

  WeightReader r(f);
  PDSERVE_ASSIGN_OR_RETURN(w.token_embedding, r.Matrix("token_embd.weight", c.vocab_size, c.dim));
  w.layers.resize(c.n_layers);
  for (int i = 0; i < c.n_layers; ++i) {
    LayerWeights& l = w.layers[i];
    const std::string p = absl::StrCat("blk.", i, ".");
    PDSERVE_ASSIGN_OR_RETURN(l.attn_norm, r.Vector(p + "attn_norm.weight", c.dim));
    PDSERVE_ASSIGN_OR_RETURN(l.wq, r.Matrix(p + "attn_q.weight", q_dim, c.dim));
    PDSERVE_ASSIGN_OR_RETURN(l.wk, r.Matrix(p + "attn_k.weight", kv_dim, c.dim));
    PDSERVE_ASSIGN_OR_RETURN(l.wv, r.Matrix(p + "attn_v.weight", kv_dim, c.dim));
    PDSERVE_ASSIGN_OR_RETURN(l.wo, r.Matrix(p + "attn_output.weight", c.dim, q_dim));
    PDSERVE_ASSIGN_OR_RETURN(l.ffn_norm, r.Vector(p + "ffn_norm.weight", c.dim));
    PDSERVE_ASSIGN_OR_RETURN(l.w_gate, r.Matrix(p + "ffn_gate.weight", c.hidden_dim, c.dim));
    PDSERVE_ASSIGN_OR_RETURN(l.w_down, r.Matrix(p + "ffn_down.weight", c.dim, c.hidden_dim));
    PDSERVE_ASSIGN_OR_RETURN(l.w_up, r.Matrix(p + "ffn_up.weight", c.hidden_dim, c.dim));
  }
  PDSERVE_ASSIGN_OR_RETURN(w.final_norm, r.Vector("output_norm.weight", c.dim));
  if (f.FindTensor("output.weight") != nullptr) {
    PDSERVE_ASSIGN_OR_RETURN(w.output, r.Matrix("output.weight", c.vocab_size, c.dim));
  } else {
    w.output = w.token_embedding;
    w.output_tied_to_embedding = true;
  }
  w.weight_bytes = r.weight_bytes;
  w.storage = std::move(file);
  return w;
}

absl::StatusOr<ModelWeights> LoadGgufLlama(const std::string& path) {
  absl::StatusOr<std::unique_ptr<GgufFile>> file = GgufFile::Open(path);
  if (!file.ok()) return file.status();
  return LoadGgufLlama(std::shared_ptr<const GgufFile>(*std::move(file)));
}

}  // namespace pdserve::model
