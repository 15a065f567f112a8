#include "kernels/cuda/device.h"

#include <cuda_runtime_api.h>

#include <cstdio>
#include <string>

namespace pdserve::kernels::gpu {

bool CudaDeviceAvailable(std::string* reason) {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    if (reason != nullptr) {
      *reason = std::string("cudaGetDeviceCount failed: ") + cudaGetErrorName(err) + " (" +
                cudaGetErrorString(err) + ")";
    }
    cudaGetLastError();  // clear it, so that it does not surface in a later check
    return false;
  }
  if (count == 0) {
    if (reason != nullptr) *reason = "cudaGetDeviceCount found no device";
    return false;
  }
  return true;
}

int CurrentDeviceMultiprocessors() {
  int device = 0;
  int n_sms = 0;
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&n_sms, cudaDevAttrMultiProcessorCount, device) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return n_sms;
}

std::string CurrentDeviceDescription() {
  int device = 0;
  cudaDeviceProp prop{};
  cudaError_t err = cudaGetDevice(&device);
  if (err == cudaSuccess) err = cudaGetDeviceProperties(&prop, device);
  if (err != cudaSuccess) {
    cudaGetLastError();
    return std::string("no device: ") + cudaGetErrorString(err);
  }
  char text[512];
  std::snprintf(text, sizeof text, "%s, sm_%d%d, %d SMs, %.1f GiB, L2 %.0f MiB", prop.name,
                prop.major, prop.minor, prop.multiProcessorCount,
                static_cast<double>(prop.totalGlobalMem) / (1024.0 * 1024.0 * 1024.0),
                static_cast<double>(prop.l2CacheSize) / (1024.0 * 1024.0));
  return text;
}

}  // namespace pdserve::kernels::gpu
