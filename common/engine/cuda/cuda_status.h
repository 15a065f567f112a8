#pragma once
// The one place where the CUDA backend turns the runtime's and the launchers' error codes into
// absl::Status (kernels/cuda/status.h: launchers return cudaError_t and name a rejected argument
// in LastArgumentError()).

#include <cuda_runtime_api.h>

#include <string>

#include "absl/status/status.h"

namespace pdserve::engine::cuda {

// OK for cudaSuccess. Otherwise InvalidArgument for a rejected launch argument (with the
// launcher's reason), ResourceExhausted for out-of-memory, Internal for anything else; the
// message starts with `what` (the operation) and names the CUDA error.
absl::Status CudaStatus(cudaError_t err, const std::string& what);

}  // namespace pdserve::engine::cuda

// Inside a function returning absl::Status or StatusOr: returns the converted error unless
// `call` (an expression of type cudaError_t) succeeded.
#define PDSERVE_RETURN_IF_CUDA_ERROR(call, what)                                    \
  do {                                                                              \
    if (const cudaError_t pdserve_cuda_err_ = (call); pdserve_cuda_err_ != cudaSuccess) \
      return ::pdserve::engine::cuda::CudaStatus(pdserve_cuda_err_, what);          \
  } while (0)
