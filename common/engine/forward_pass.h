#pragma once
// The LLaMA forward pass over a ragged batch of tokens with a paged KV cache: the interface that
// the CPU backend (cpu_llama_forward.h) and the CUDA backend (cuda/cuda_llama_forward.h)
// implement, and the checks both make of a batch.
//
// One entry point serves both phases: prefill is a batch of consecutive positions of one
// sequence (matrix-matrix work), decode is one new token for each of several sequences (the
// weights are read once per step for the whole batch).

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "common/kv/kv_block_pool.h"
#include "common/model/model_weights.h"

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

class ForwardPass {
 public:
  virtual ~ForwardPass() = default;

  // Runs the batch, writes each token's K/V into its sequence's blocks of the backend's pool,
  // and returns the logits (n_want × vocab_size, row-major, on the host) of the tokens with
  // want_logits, in batch order. Within one sequence, tokens must be in increasing, consecutive
  // position order (they may interleave with other sequences' tokens). Not thread-safe: one
  // call at a time.
  virtual absl::StatusOr<std::vector<float>> Forward(absl::Span<const BatchToken> batch) = 0;

  virtual const model::ModelConfig& config() const = 0;
};

// OK when a pool of `layout` can hold this model's K/V (layers, kv heads, head_dim agree).
absl::Status CheckLayoutFitsModel(const model::ModelConfig& config, const kv::KvLayout& layout);

// OK when every token of `batch` is in the vocabulary and the context, has a block table with
// room for its position, and each sequence's positions are consecutive; and the pool's layout
// fits the model. The errors name the offending value.
absl::Status CheckBatch(const model::ModelConfig& config, const kv::KvLayout& layout,
                        absl::Span<const BatchToken> batch);

// The KV layout this model needs for the given block size and dtype.
kv::KvLayout KvLayoutForModel(const model::ModelConfig& config, int block_size,
                              kernels::KvDtype dtype);

}  // namespace pdserve::engine
