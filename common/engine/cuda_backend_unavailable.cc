// CreateCudaBackend for builds without CUDA (-DPDSERVE_CUDA=OFF); cuda/cuda_backend.cc otherwise.
#include "common/engine/backend.h"

namespace pdserve::engine {

absl::StatusOr<DeviceBackend> CreateCudaBackend(const model::ModelWeights& /*weights*/,
                                                const kv::KvLayout& /*layout*/,
                                                int64_t /*n_blocks*/,
                                                const CudaBackendOptions& /*options*/) {
  return absl::FailedPreconditionError(
      "this build has no CUDA backend (configured with -DPDSERVE_CUDA=OFF): use --device cpu, "
      "or rebuild on a machine with the CUDA toolkit");
}

}  // namespace pdserve::engine
