#pragma once
// The LLaMA forward pass over a ragged batch of tokens with a paged KV cache.
//
// One entry point serves both phases: prefill is a batch of consecutive positions of one
// sequence (matrix-matrix work), decode is one new token for each of several sequences (the
// weights are read once per step for the whole batch). Every token's result depends only on its
// own sequence's cached K/V and its own activations, never on what else is in the batch or on the
// thread count (see the determinism contract in kernels/cpu/matmul.h).

#include <cstdint>
#include <map>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "common/kv/kv_block_pool.h"
#include "common/model/model_weights.h"
#include "kernels/cpu/isa.h"
#include "kernels/cpu/paged_attention.h"
#include "kernels/cpu/thread_pool.h"

namespace pdserve::engine {

// One token to run: its id, its position in its sequence, and that sequence's block table.
// The table must already hold blocks for every position up to `position`; K/V of positions
// [0, position) must be cached in it (by earlier calls or earlier tokens of this batch).
struct BatchToken {
  int32_t token = 0;
  int64_t position = 0;
  const kv::BlockTable* blocks = nullptr;
  bool want_logits = false;
};

class LlamaForward {
 public:
  // All references must outlive this object. The pool's layout must match the model.
  LlamaForward(const model::ModelWeights& weights, kv::KvBlockPool& pool,
               kernels::ThreadPool& threads, kernels::Isa isa);

  // Runs the batch, writes each token's K/V into its sequence's blocks, and returns the logits
  // (n_want × vocab_size, row-major) of the tokens with want_logits, in batch order.
  // Within one sequence, tokens must be in increasing position order.
  absl::StatusOr<std::vector<float>> Forward(absl::Span<const BatchToken> batch);

  const model::ModelConfig& config() const { return weights_.config; }

 private:
  // One layer's view of the KV of every sequence in a batch.
  struct LayerViews {
    // Per distinct block table: the K-slab address of each of its blocks, in position order.
    std::map<const kv::BlockTable*, std::vector<uint8_t*>> slabs;
    std::vector<kernels::PagedKvLayer> per_token;  // batch order; points into `slabs`
  };

  absl::Status CheckBatch(absl::Span<const BatchToken> batch) const;
  LayerViews BuildLayerViews(int layer, absl::Span<const BatchToken> batch);
  // out (n, n_heads * head_dim) from q (n, n_heads * head_dim) over each token's cached context.
  void Attention(absl::Span<const BatchToken> batch, const LayerViews& views, const float* q,
                 float* out);

  const model::ModelWeights& weights_;
  kv::KvBlockPool& pool_;
  kernels::ThreadPool& threads_;
  kernels::Isa isa_;
};

// The KV layout this model needs for the given block size and dtype.
kv::KvLayout KvLayoutForModel(const model::ModelConfig& config, int block_size,
                              kernels::KvDtype dtype);

}  // namespace pdserve::engine
