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

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <cstdint>
#include <memory>
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
  // `dtype`: f32 or bf16, as above.
  static absl::StatusOr<std::unique_ptr<CudaLlamaForward>> Create(
      const model::ModelWeights& weights, kv::KvBlockPool& pool, kernels::gpu::ActDtype dtype);
  ~CudaLlamaForward() override;

  absl::StatusOr<std::vector<float>> Forward(absl::Span<const BatchToken> batch) override;
  const model::ModelConfig& config() const override { return config_; }

  // Device memory the weights take.
  size_t weight_device_bytes() const { return weights_.device_bytes; }
  kernels::gpu::ActDtype dtype() const { return weights_.matrix_dtype; }

 private:
  struct Plan;

  CudaLlamaForward(const model::ModelConfig& config, kv::KvBlockPool& pool);
  // Rows, attention launches and metadata for a checked, non-empty batch.
  Plan PlanBatch(absl::Span<const BatchToken> batch) const;
  // Device buffers for a batch of n tokens (and the decode attention's workspace).
  absl::Status ReserveActivations(int64_t n, size_t attention_workspace_bytes);
  absl::Status Run(const Plan& plan, std::vector<float>& logits);
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
};

}  // namespace pdserve::engine::cuda
