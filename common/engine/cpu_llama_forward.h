#pragma once
// The LLaMA forward pass on the CPU (kernels/cpu), over a KV pool in host memory.
//
// Every token's result depends only on its own sequence's cached K/V and its own activations,
// never on what else is in the batch or on the thread count (see the determinism contract in
// kernels/cpu/matmul.h).

#include <cstdint>
#include <map>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "common/engine/forward_pass.h"
#include "common/kv/kv_block_pool.h"
#include "common/model/model_weights.h"
#include "kernels/cpu/isa.h"
#include "kernels/cpu/paged_attention.h"
#include "kernels/cpu/thread_pool.h"

namespace pdserve::engine {

class CpuLlamaForward final : public ForwardPass {
 public:
  // All references must outlive this object. The pool's layout must match the model and its
  // bytes must be in host memory (pool.on_host()).
  CpuLlamaForward(const model::ModelWeights& weights, kv::KvBlockPool& pool,
                  kernels::ThreadPool& threads, kernels::Isa isa);

  absl::StatusOr<std::vector<float>> Forward(absl::Span<const BatchToken> batch) override;
  const model::ModelConfig& config() const override { return weights_.config; }

 private:
  // One layer's view of the KV of every sequence in a batch.
  struct LayerViews {
    // Per distinct block table: the K-slab address of each of its blocks, in position order.
    std::map<const kv::BlockTable*, std::vector<uint8_t*>> slabs;
    std::vector<kernels::PagedKvLayer> per_token;  // batch order; points into `slabs`
  };

  LayerViews BuildLayerViews(int layer, absl::Span<const BatchToken> batch);
  // out (n, n_heads * head_dim) from q (n, n_heads * head_dim) over each token's cached context.
  void Attention(absl::Span<const BatchToken> batch, const LayerViews& views, const float* q,
                 float* out);

  const model::ModelWeights& weights_;
  kv::KvBlockPool& pool_;
  kernels::ThreadPool& threads_;
  kernels::Isa isa_;
};

}  // namespace pdserve::engine
