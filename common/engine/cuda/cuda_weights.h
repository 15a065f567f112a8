#pragma once
// A model's weights in device memory, in the form the CUDA forward pass reads them: matrices as
// bf16 or f32 for cuBLAS (the q|k|v projections fused into one matrix, gate|up into another),
// norm vectors as f32, and the token embedding in its stored type (the lookup dequantizes rows).

#include <cuda_runtime_api.h>

#include <cstddef>
#include <vector>

#include "absl/status/statusor.h"
#include "common/engine/cuda/device_buffer.h"
#include "common/model/model_weights.h"
#include "kernels/cuda/status.h"
#include "kernels/tensor_type.h"

namespace pdserve::engine::cuda {

// Matrices are in CudaModelWeights::matrix_dtype.
struct CudaLayerWeights {
  DeviceBuffer attn_norm;  // (dim) f32
  DeviceBuffer wqkv;       // (n_heads + 2 n_kv_heads) * head_dim rows of dim: q | k | v
  DeviceBuffer wo;         // (dim, n_heads * head_dim)
  DeviceBuffer ffn_norm;   // (dim) f32
  DeviceBuffer w_gate_up;  // (2 hidden_dim, dim): gate | up
  DeviceBuffer w_down;     // (dim, hidden_dim)
};

struct CudaModelWeights {
  DeviceBuffer embedding;  // (vocab, dim) as embedding_type
  kernels::TensorType embedding_type = kernels::TensorType::kF32;
  kernels::gpu::ActDtype matrix_dtype = kernels::gpu::ActDtype::kBF16;
  std::vector<CudaLayerWeights> layers;
  DeviceBuffer final_norm;  // (dim) f32
  DeviceBuffer output;      // (vocab, dim)
  size_t device_bytes = 0;  // all of the above
};

// Uploads `weights` to the current device with matrices in `matrix_dtype` (f32 or bf16). Types
// the device dequantizer reads go up as stored and are converted there (bit for bit the CPU's
// values; rounded to bf16 for bf16); the others are dequantized on the host first. Finished
// when it returns.
absl::StatusOr<CudaModelWeights> UploadWeights(const model::ModelWeights& weights,
                                               kernels::gpu::ActDtype matrix_dtype);

// True when every matrix of the model is stored as f32 (an f32 checkpoint such as llama2.c's).
bool AllMatricesF32(const model::ModelWeights& weights);

}  // namespace pdserve::engine::cuda
