#include "common/engine/cuda/cuda_status.h"

#include "absl/strings/str_cat.h"
#include "kernels/cuda/status.h"

namespace pdserve::engine::cuda {

absl::Status CudaStatus(cudaError_t err, const std::string& what) {
  if (err == cudaSuccess) return absl::OkStatus();
  // Clears the runtime's sticky "last error" for non-sticky failures, so later calls start clean.
  cudaGetLastError();
  const std::string cuda = absl::StrCat(cudaGetErrorName(err), ": ", cudaGetErrorString(err));
  switch (err) {
    case cudaErrorInvalidValue: {
      const std::string reason = kernels::gpu::LastArgumentError();
      return absl::InvalidArgumentError(absl::StrCat(what, ": ", reason.empty() ? cuda : reason));
    }
    case cudaErrorMemoryAllocation:
      return absl::ResourceExhaustedError(
          absl::StrCat(what, ": out of device memory (", cuda, ")"));
    default:
      return absl::InternalError(absl::StrCat(what, ": ", cuda));
  }
}

}  // namespace pdserve::engine::cuda
