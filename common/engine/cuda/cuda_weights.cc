#include "common/engine/cuda/cuda_weights.h"

#include <cstdint>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/engine/cuda/cuda_status.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cuda/dequantize.h"

namespace pdserve::engine::cuda {
namespace {

using kernels::WeightMatrix;
using kernels::gpu::ActDtype;

size_t ElementBytes(ActDtype dtype) { return dtype == ActDtype::kF32 ? 4 : 2; }

// Uploads the stored bytes of `w`, or (for types the device does not read) its rows dequantized
// on the host to f32. Returns the type the uploaded bytes are in.
absl::StatusOr<kernels::TensorType> UploadStored(const WeightMatrix& w, DeviceBuffer& dst,
                                                 const std::string& what) {
  if (kernels::gpu::DequantizeSupported(w.type)) {
    const size_t bytes = w.row_bytes * static_cast<size_t>(w.rows);
    if (absl::Status s = dst.Reserve(bytes, what); !s.ok()) return s;
    PDSERVE_RETURN_IF_CUDA_ERROR(cudaMemcpy(dst.get(), w.data, bytes, cudaMemcpyHostToDevice),
                                 absl::StrCat("uploading ", what));
    return w.type;
  }
  std::vector<float> host(static_cast<size_t>(w.rows * w.cols));
  for (int64_t r = 0; r < w.rows; ++r) {
    kernels::DequantizeWeightRow(w, r, host.data() + r * w.cols, kernels::Isa::kScalar);
  }
  const size_t bytes = host.size() * sizeof(float);
  if (absl::Status s = dst.Reserve(bytes, what); !s.ok()) return s;
  PDSERVE_RETURN_IF_CUDA_ERROR(cudaMemcpy(dst.get(), host.data(), bytes, cudaMemcpyHostToDevice),
                               absl::StrCat("uploading ", what));
  return kernels::TensorType::kF32;
}

// Writes `w` as `dtype` rows at `dst` (device, w.rows * w.cols elements), through `staging`.
absl::Status UploadConverted(const WeightMatrix& w, ActDtype dtype, DeviceBuffer& staging,
                             void* dst, const std::string& what) {
  absl::StatusOr<kernels::TensorType> type = UploadStored(w, staging, what);
  if (!type.ok()) return type.status();
  PDSERVE_RETURN_IF_CUDA_ERROR(
      kernels::gpu::Dequantize(*type, staging.get(), w.rows * w.cols, dtype, dst,
                               /*stream=*/nullptr),
      absl::StrCat("converting ", what));
  // The staging buffer is reused by the next upload.
  PDSERVE_RETURN_IF_CUDA_ERROR(cudaDeviceSynchronize(), absl::StrCat("converting ", what));
  return absl::OkStatus();
}

// One `dtype` matrix made of the rows of `parts`, in order (all of one width).
absl::StatusOr<DeviceBuffer> UploadFused(std::initializer_list<const WeightMatrix*> parts,
                                         ActDtype dtype, DeviceBuffer& staging,
                                         const std::string& what) {
  int64_t rows = 0;
  const int64_t cols = (*parts.begin())->cols;
  for (const WeightMatrix* w : parts) {
    if (w->cols != cols) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": fused matrices differ in width (",
                                                     w->cols, " vs ", cols, ")"));
    }
    rows += w->rows;
  }
  absl::StatusOr<DeviceBuffer> fused =
      DeviceBuffer::Allocate(static_cast<size_t>(rows * cols) * ElementBytes(dtype), what);
  if (!fused.ok()) return fused.status();
  int64_t row = 0;
  for (const WeightMatrix* w : parts) {
    void* dst = fused->as<uint8_t>() + static_cast<size_t>(row * cols) * ElementBytes(dtype);
    if (absl::Status s = UploadConverted(*w, dtype, staging, dst, what); !s.ok()) {
      return s;
    }
    row += w->rows;
  }
  return fused;
}

absl::StatusOr<DeviceBuffer> UploadF32(const std::vector<float>& v, const std::string& what) {
  absl::StatusOr<DeviceBuffer> buffer = DeviceBuffer::Allocate(v.size() * sizeof(float), what);
  if (!buffer.ok()) return buffer.status();
  PDSERVE_RETURN_IF_CUDA_ERROR(
      cudaMemcpy(buffer->get(), v.data(), v.size() * sizeof(float), cudaMemcpyHostToDevice),
      absl::StrCat("uploading ", what));
  return buffer;
}

}  // namespace

bool AllMatricesF32(const model::ModelWeights& weights) {
  if (weights.output.type != kernels::TensorType::kF32) return false;
  for (const model::LayerWeights& w : weights.layers) {
    for (const WeightMatrix* m : {&w.wq, &w.wk, &w.wv, &w.wo, &w.w_gate, &w.w_up, &w.w_down}) {
      if (m->type != kernels::TensorType::kF32) return false;
    }
  }
  return true;
}

absl::StatusOr<CudaModelWeights> UploadWeights(const model::ModelWeights& weights,
                                               ActDtype matrix_dtype) {
  if (matrix_dtype != ActDtype::kF32 && matrix_dtype != ActDtype::kBF16) {
    return absl::InvalidArgumentError("weight matrices must be f32 or bf16 on the device");
  }
  CudaModelWeights out;
  out.matrix_dtype = matrix_dtype;
  DeviceBuffer staging;
  absl::StatusOr<kernels::TensorType> embedding_type =
      UploadStored(weights.token_embedding, out.embedding, "the token embedding");
  if (!embedding_type.ok()) return embedding_type.status();
  out.embedding_type = *embedding_type;
  out.device_bytes += out.embedding.size();

  for (size_t l = 0; l < weights.layers.size(); ++l) {
    const model::LayerWeights& w = weights.layers[l];
    const std::string layer = absl::StrCat("layer ", l, " ");
    CudaLayerWeights d;
    absl::StatusOr<DeviceBuffer> buffer = UploadF32(w.attn_norm, layer + "attn_norm");
    if (!buffer.ok()) return buffer.status();
    d.attn_norm = *std::move(buffer);
    buffer = UploadF32(w.ffn_norm, layer + "ffn_norm");
    if (!buffer.ok()) return buffer.status();
    d.ffn_norm = *std::move(buffer);
    buffer = UploadFused({&w.wq, &w.wk, &w.wv}, matrix_dtype, staging, layer + "q|k|v");
    if (!buffer.ok()) return buffer.status();
    d.wqkv = *std::move(buffer);
    buffer = UploadFused({&w.wo}, matrix_dtype, staging, layer + "attn_output");
    if (!buffer.ok()) return buffer.status();
    d.wo = *std::move(buffer);
    buffer = UploadFused({&w.w_gate, &w.w_up}, matrix_dtype, staging, layer + "gate|up");
    if (!buffer.ok()) return buffer.status();
    d.w_gate_up = *std::move(buffer);
    buffer = UploadFused({&w.w_down}, matrix_dtype, staging, layer + "ffn_down");
    if (!buffer.ok()) return buffer.status();
    d.w_down = *std::move(buffer);
    out.device_bytes += d.attn_norm.size() + d.ffn_norm.size() + d.wqkv.size() + d.wo.size() +
                        d.w_gate_up.size() + d.w_down.size();
    out.layers.push_back(std::move(d));
  }
  absl::StatusOr<DeviceBuffer> buffer = UploadF32(weights.final_norm, "output_norm");
  if (!buffer.ok()) return buffer.status();
  out.final_norm = *std::move(buffer);
  buffer = UploadFused({&weights.output}, matrix_dtype, staging, "the output matrix");
  if (!buffer.ok()) return buffer.status();
  out.output = *std::move(buffer);
  out.device_bytes += out.final_norm.size() + out.output.size();
  return out;
}

}  // namespace pdserve::engine::cuda
