#include "common/engine/forward_pass.h"

#include <map>

#include "absl/strings/str_cat.h"

namespace pdserve::engine {

kv::KvLayout KvLayoutForModel(const model::ModelConfig& config, int block_size,
                              kernels::KvDtype dtype) {
  kv::KvLayout layout;
  layout.n_layers = config.n_layers;
  layout.n_kv_heads = config.n_kv_heads;
  layout.head_dim = config.head_dim;
  layout.block_size = block_size;
  layout.dtype = dtype;
  return layout;
}

absl::Status CheckLayoutFitsModel(const model::ModelConfig& c, const kv::KvLayout& layout) {
  if (layout.n_layers != c.n_layers || layout.n_kv_heads != c.n_kv_heads ||
      layout.head_dim != c.head_dim) {
    return absl::FailedPreconditionError("KV pool layout does not match the model");
  }
  return absl::OkStatus();
}

absl::Status CheckBatch(const model::ModelConfig& c, const kv::KvLayout& layout,
                        absl::Span<const BatchToken> batch) {
  if (absl::Status s = CheckLayoutFitsModel(c, layout); !s.ok()) return s;
  std::map<const kv::BlockTable*, int64_t> last_position;
  for (const BatchToken& t : batch) {
    if (t.token < 0 || t.token >= c.vocab_size) {
      return absl::InvalidArgumentError(
          absl::StrCat("token id ", t.token, " is outside the vocabulary [0, ", c.vocab_size, ")"));
    }
    if (t.position < 0 || t.position >= c.context_length) {
      return absl::InvalidArgumentError(absl::StrCat("position ", t.position,
                                                     " is outside the context [0, ",
                                                     c.context_length, ")"));
    }
    if (t.blocks == nullptr) return absl::InvalidArgumentError("batch token without a block table");
    if (t.position / layout.block_size >= static_cast<int64_t>(t.blocks->blocks.size())) {
      return absl::FailedPreconditionError(absl::StrCat(
          "block table of ", t.blocks->blocks.size(), " blocks has no room for position ",
          t.position));
    }
    auto [it, inserted] = last_position.try_emplace(t.blocks, t.position);
    if (!inserted) {
      if (t.position != it->second + 1) {
        return absl::InvalidArgumentError("tokens of one sequence must have consecutive positions");
      }
      it->second = t.position;
    }
  }
  return absl::OkStatus();
}

}  // namespace pdserve::engine
