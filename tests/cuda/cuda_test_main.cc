// main() of every GPU test binary: with no usable CUDA device the binary prints why and exits
// 77, which ctest (SKIP_RETURN_CODE 77) and deploy/gpu-check.sh report as SKIPPED, not passed.

#include <cstdio>
#include <string>

#include "gtest/gtest.h"
#include "kernels/cuda/device.h"

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  std::string reason;
  if (!pdserve::kernels::gpu::CudaDeviceAvailable(&reason)) {
    std::printf("SKIPPED: no usable CUDA device: %s\n", reason.c_str());
    return 77;
  }
  std::printf("device: %s\n", pdserve::kernels::gpu::CurrentDeviceDescription().c_str());
  return RUN_ALL_TESTS();
}
