#pragma once
// Whether this process can use a CUDA device, and the device facts the launchers plan with.

#include <string>

namespace pdserve::kernels::gpu {

// True when at least one CUDA device is usable. Otherwise false, with the reason in *reason
// (when not null): with no GPU or no driver, cudaGetDeviceCount fails (often "CUDA driver version
// is insufficient for CUDA runtime version") and that failure is the reason.
bool CudaDeviceAvailable(std::string* reason);

// Streaming multiprocessors of the current device, or 0 when it cannot be read.
int CurrentDeviceMultiprocessors();

// "NVIDIA H100 80GB HBM3, sm_90, 132 SMs, 79.1 GiB" for logs, or the error text.
std::string CurrentDeviceDescription();

}  // namespace pdserve::kernels::gpu
