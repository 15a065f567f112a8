// CreateCudaBackend for builds with CUDA (see backend.h).
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/engine/backend.h"
#include "common/engine/cuda/cuda_llama_forward.h"
#include "common/engine/cuda/cuda_weights.h"
#include "common/engine/cuda/device_kv_storage.h"
#include "kernels/cuda/device.h"

namespace pdserve::engine {

absl::StatusOr<DeviceBackend> CreateCudaBackend(const model::ModelWeights& weights,
                                                const kv::KvLayout& layout, int64_t n_blocks,
                                                const CudaBackendOptions& options) {
  std::string reason;
  if (!kernels::gpu::CudaDeviceAvailable(&reason)) {
    return absl::FailedPreconditionError(
        absl::StrCat("no usable CUDA device for --device cuda: ", reason));
  }
  if (absl::Status s = layout.Validate(); !s.ok()) return s;
  if (n_blocks < 0) return absl::InvalidArgumentError("KV block pool: negative block count");
  const bool f32 = options.dtype == CudaDtype::kF32 ||
                   (options.dtype == CudaDtype::kAuto && cuda::AllMatricesF32(weights));
  const kernels::gpu::ActDtype act_dtype =
      f32 ? kernels::gpu::ActDtype::kF32 : kernels::gpu::ActDtype::kBF16;
  absl::StatusOr<std::unique_ptr<kv::KvBlockStorage>> storage =
      cuda::MakeDeviceKvStorage(static_cast<size_t>(n_blocks) * layout.BlockBytes());
  if (!storage.ok()) return storage.status();
  absl::StatusOr<std::unique_ptr<kv::KvBlockPool>> pool =
      kv::KvBlockPool::Create(layout, n_blocks, *std::move(storage));
  if (!pool.ok()) return pool.status();
  absl::StatusOr<std::unique_ptr<cuda::CudaLlamaForward>> forward =
      cuda::CudaLlamaForward::Create(weights, **pool, act_dtype, options.graphs);
  if (!forward.ok()) return forward.status();
  DeviceBackend backend;
  backend.description = absl::StrFormat(
      "device: cuda (%s); weights %.1f MiB in device memory (%s matrices and activations); "
      "decode steps %s",
      kernels::gpu::CurrentDeviceDescription(),
      static_cast<double>((*forward)->weight_device_bytes()) / (1024.0 * 1024.0),
      f32 ? "f32" : "bf16", options.graphs ? "as CUDA graphs" : "eager");
  backend.pool = *std::move(pool);
  backend.forward = *std::move(forward);
  return backend;
}

}  // namespace pdserve::engine
