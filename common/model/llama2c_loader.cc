#include "common/model/llama2c_loader.h"

#include <cstring>
#include <limits>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/gguf/mapped_file.h"

namespace pdserve::model {
namespace {

constexpr size_t kHeaderBytes = 7 * sizeof(int32_t);
// Versioned llama2.c exports (version 1 and later) start with this magic ("ak42").
constexpr uint32_t kVersionedMagic = 0x616b3432;

// Cuts consecutive f32 tensors out of the checkpoint, in file order. The total size was checked
// against the file size before any slicing, so the cursor never leaves the buffer.
class TensorSlicer {
 public:
  explicit TensorSlicer(const uint8_t* at) : at_(at) {}

  kernels::WeightMatrix Matrix(int64_t rows, int64_t cols) {
    kernels::WeightMatrix m;
    m.type = kernels::TensorType::kF32;
    m.data = at_;
    m.rows = rows;
    m.cols = cols;
    m.row_bytes = static_cast<size_t>(cols) * sizeof(float);
    at_ += m.row_bytes * rows;
    return m;
  }

  std::vector<float> Vector(int64_t n) {
    std::vector<float> v(n);
    std::memcpy(v.data(), at_, n * sizeof(float));
    at_ += n * sizeof(float);
    return v;
  }

  void Skip(uint64_t n_floats) { at_ += n_floats * sizeof(float); }

 private:
  const uint8_t* at_;
};

}  // namespace

absl::StatusOr<ModelWeights> ParseLlama2c(absl::Span<const uint8_t> bytes,
                                          std::shared_ptr<const void> owner,
                                          const std::string& display_name) {
  auto error = [&](auto&&... parts) {
    return absl::InvalidArgumentError(absl::StrCat(display_name, ": ", parts...));
  };
  if (bytes.size() < kHeaderBytes) {
    return error("file is ", bytes.size(), " bytes, too small for the llama2.c header (",
                 kHeaderBytes, " bytes)");
  }
  int32_t header[7];
  std::memcpy(header, bytes.data(), kHeaderBytes);
  if (static_cast<uint32_t>(header[0]) == kVersionedMagic) {
    return error("versioned llama2.c checkpoint (magic 'ak42') is not supported; export with "
                 "the legacy version 0");
  }
  const int32_t dim = header[0], hidden_dim = header[1], n_layers = header[2],
                n_heads = header[3], n_kv_heads = header[4], raw_vocab = header[5],
                seq_len = header[6];
  if (raw_vocab == std::numeric_limits<int32_t>::min()) {
    return error("vocab_size ", raw_vocab, " is invalid");
  }
  const bool shared_classifier = raw_vocab > 0;

  ModelConfig config;
  config.architecture = "llama";
  config.n_layers = n_layers;
  config.dim = dim;
  config.hidden_dim = hidden_dim;
  config.n_heads = n_heads;
  config.n_kv_heads = n_kv_heads;
  config.head_dim = n_heads > 0 ? dim / n_heads : 0;
  config.rotary_dim = config.head_dim;
  config.vocab_size = raw_vocab < 0 ? -raw_vocab : raw_vocab;
  config.context_length = seq_len;
  config.rope_base = 10000.0f;
  config.rms_eps = 1e-5f;
  if (absl::Status s = ValidateModelConfig(config, display_name); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        s.message(), " (llama2.c header: dim ", dim, ", hidden_dim ", hidden_dim, ", n_layers ",
        n_layers, ", n_heads ", n_heads, ", n_kv_heads ", n_kv_heads, ", vocab_size ",
        raw_vocab, ", seq_len ", seq_len, ")"));
  }

  // Every count below is a product of header fields, each < 2^31: computed in unsigned 128-bit
  // arithmetic so that no header can overflow it.
  using u128 = unsigned __int128;
  const u128 L = n_layers, D = dim, H = hidden_dim, V = config.vocab_size;
  const u128 q_dim = static_cast<u128>(n_heads) * config.head_dim;
  const u128 kv_dim = static_cast<u128>(n_kv_heads) * config.head_dim;
  const u128 weight_floats = V * D                       // token_embedding
                             + L * D                     // rms_att
                             + L * q_dim * D             // wq
                             + 2 * L * kv_dim * D        // wk, wv
                             + L * D * q_dim             // wo
                             + L * D                     // rms_ffn
                             + 3 * L * H * D             // w1, w2, w3
                             + D                         // rms_final
                             + (shared_classifier ? 0 : V * D);  // wcls
  const u128 rope_floats = static_cast<u128>(seq_len) * config.head_dim;  // 2 x seq x head/2
  const u128 expected_bytes = kHeaderBytes + (weight_floats + rope_floats) * sizeof(float);
  if (expected_bytes != bytes.size()) {
    const bool too_big = expected_bytes > std::numeric_limits<uint64_t>::max();
    return error(expected_bytes > bytes.size() ? "truncated: " : "unexpected trailing bytes: ",
                 "the header implies ",
                 too_big ? std::string("more than 2^64") :
                           absl::StrCat(static_cast<uint64_t>(expected_bytes)),
                 " bytes but the file has ", bytes.size());
  }

  ModelWeights w;
  w.config = config;
  TensorSlicer slicer(bytes.data() + kHeaderBytes);
  const int64_t qd = static_cast<int64_t>(q_dim), kvd = static_cast<int64_t>(kv_dim);
  w.token_embedding = slicer.Matrix(config.vocab_size, dim);
  w.layers.resize(n_layers);
  // The checkpoint stores each kind of tensor for all layers together.
  for (LayerWeights& l : w.layers) l.attn_norm = slicer.Vector(dim);
  for (LayerWeights& l : w.layers) l.wq = slicer.Matrix(qd, dim);
  for (LayerWeights& l : w.layers) l.wk = slicer.Matrix(kvd, dim);
  for (LayerWeights& l : w.layers) l.wv = slicer.Matrix(kvd, dim);
  for (LayerWeights& l : w.layers) l.wo = slicer.Matrix(dim, qd);
  for (LayerWeights& l : w.layers) l.ffn_norm = slicer.Vector(dim);
  for (LayerWeights& l : w.layers) l.w_gate = slicer.Matrix(hidden_dim, dim);
  for (LayerWeights& l : w.layers) l.w_down = slicer.Matrix(dim, hidden_dim);
  for (LayerWeights& l : w.layers) l.w_up = slicer.Matrix(hidden_dim, dim);
  w.final_norm = slicer.Vector(dim);
  slicer.Skip(static_cast<uint64_t>(rope_floats));
  if (shared_classifier) {
    w.output = w.token_embedding;
    w.output_tied_to_embedding = true;
  } else {
    w.output = slicer.Matrix(config.vocab_size, dim);
  }
  w.weight_bytes = static_cast<size_t>(weight_floats * sizeof(float));
  w.storage = std::move(owner);
  return w;
}

absl::StatusOr<ModelWeights> LoadLlama2c(const std::string& path) {
  absl::StatusOr<std::unique_ptr<gguf::MappedFile>> mapped = gguf::MappedFile::Open(path);
  if (!mapped.ok()) return mapped.status();
  std::shared_ptr<const gguf::MappedFile> owner = *std::move(mapped);
  return ParseLlama2c(owner->bytes(), owner, path);
}

}  // namespace pdserve::model
