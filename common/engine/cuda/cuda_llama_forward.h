#pragma once
// The LLaMA forward pass on an NVIDIA GPU (kernels/cuda), over a KV pool in device memory.
//
// Numerics, by the activation dtype chosen at creation:
//   f32   every matrix and activation is f32 (cuBLAS without TF32): the CPU backend's arithmetic
//         up to the order of summation, so greedy outputs agree unless logits tie to ~1e-5;
//   bf16  matrices and the matrix products' inputs and outputs are bf16 (f32 accumulation), the
//         residual stream and the logits f32; results differ from the CPU's by bf16 rounding.
// Norms, RoPE, SwiGLU and attention compute in f32 either way (kernels/cuda).
//
// A batch runs as: its single-token sequences first (one paged-attention decode launch for all
// of them), then each multi-token run of one sequence (one causal prefill launch each); every
// other step is one launch over all of the batch's tokens.
//
// A decode step (every token of its own sequence, every token wanting logits) is captured once
// as a CUDA graph per (batch size, context bucket of kDecodeCtxBucket positions) and replayed:
// everything that changes between steps (ids, positions, slots, block tables, context lengths)
// is read from device memory, and the attention plan follows the bucket, not the exact length,
// so eager and graph runs compute the same numbers. Growing a buffer drops the graphs.

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "common/engine/cuda/cuda_weights.h"
#include "common/engine/cuda/device_buffer.h"
#include "common/engine/forward_pass.h"
#include "common/kv/kv_block_pool.h"

namespace pdserve::engine::cuda {

class CudaLlamaForward final : public ForwardPass {
 public:
  // Uploads the weights to the current device. `pool` must outlive the object and keep its
  // bytes in device memory (!pool.on_host()), in the layout of the model.
  // `dtype`: f32 or bf16, as above. cuda_graphs = false runs every step eagerly.
  static absl::StatusOr<std::unique_ptr<CudaLlamaForward>> Create(
      const model::ModelWeights& weights, kv::KvBlockPool& pool, kernels::gpu::ActDtype dtype,
      bool cuda_graphs = true);
  ~CudaLlamaForward() override;

  absl::StatusOr<std::vector<float>> Forward(absl::Span<const BatchToken> batch) override;
  const model::ModelConfig& config() const override { return config_; }

  // Device memory the weights take.
  size_t weight_device_bytes() const { return weights_.device_bytes; }
  kernels::gpu::ActDtype dtype() const { return weights_.matrix_dtype; }
  // Decode-step graphs captured so far (cached now), and why graphs were turned off ("" if not:
  // a capture that fails turns them off for good and the step runs eagerly).
  int graphs_captured() const { return graphs_captured_; }
  const std::string& graphs_disabled_reason() const { return graphs_disabled_reason_; }

  // Decode contexts are planned in buckets of this many positions (see above).
  static constexpr int64_t kDecodeCtxBucket = 256;

 private:
  struct Plan;

  CudaLlamaForward(const model::ModelConfig& config, kv::KvBlockPool& pool);
  // Rows, attention launches and metadata for a checked, non-empty batch.
  Plan PlanBatch(absl::Span<const BatchToken> batch) const;
  // Device buffers for a batch of n tokens, the decode attention's workspace and the batch
  // metadata; a buffer that moves drops the graphs that point into it.
  absl::Status ReserveBatchBuffers(int64_t n, size_t attention_workspace_bytes,
                                   size_t metadata_bytes);
  // The device work of a planned batch, from the embedding lookup to the logits in logits_;
  // the metadata must be on the device already. Only queues work (capturable).
  absl::Status Compute(const Plan& plan);
  // Replays (capturing first if needed) the graph of a decode-step plan.
  absl::Status LaunchGraph(const Plan& plan);
  void DropGraphs();
  // y (n, rows) = x (n, cols) · wᵀ in the activation dtype (y_f32: f32 output in bf16 mode).
  absl::Status Matmul(const void* x, int64_t n, const DeviceBuffer& w, int64_t rows, int64_t cols,
                      void* y, bool y_f32, const char* what);

  model::ModelConfig config_;
  kv::KvBlockPool& pool_;
  CudaModelWeights weights_;
  cudaStream_t stream_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
  int n_multiprocessors_ = 0;

  DeviceBuffer cublas_workspace_;
  DeviceBuffer metadata_;          // the plan's integer arrays (ids, positions, tables, ...)
  DeviceBuffer attention_workspace_;
  DeviceBuffer x_;       // (n, dim) f32 residual stream
  // In the activation dtype:
  DeviceBuffer h_;       // (n, dim) normed input of a sub-layer
  DeviceBuffer qkv_;     // (n, (n_heads + 2 n_kv_heads) head_dim)
  DeviceBuffer attn_;    // (n, n_heads head_dim)
  DeviceBuffer proj_;    // (n, dim) sub-layer output
  DeviceBuffer gate_up_;  // (n, 2 hidden)
  DeviceBuffer act_;     // (n, hidden)
  DeviceBuffer wanted_;  // (n_want, dim) final-normed rows of the tokens with logits
  DeviceBuffer logits_;  // (n_want, vocab) f32

  bool use_graphs_ = true;
  std::string graphs_disabled_reason_;
  int graphs_captured_ = 0;
  std::map<std::pair<int64_t, int64_t>, cudaGraphExec_t> graphs_;  // (n, decode max ctx)
};

}  // namespace pdserve::engine::cuda
