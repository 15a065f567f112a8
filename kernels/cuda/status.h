#pragma once
// How the CUDA launchers report errors. kernels/ is pure math and links no absl: every launcher
// returns a cudaError_t, which the engine converts to an absl::Status at its edge.
//
//   cudaSuccess            the work was queued on the stream (it may still fail when it runs:
//                          synchronize and check to see that);
//   cudaErrorInvalidValue  an argument was rejected before anything was launched;
//                          LastArgumentError() names it;
//   anything else          the launch or a CUDA/cuBLAS call failed.
//
// No launcher throws or aborts on bad input.

#include <cuda_runtime_api.h>

#include <cstdint>

namespace pdserve::kernels::gpu {

// A static description of the last argument this thread's launchers rejected ("rms_norm: dim
// must be > 0"), or "" when none was. Never null.
const char* LastArgumentError();

// Element type of activations handed to the launchers (residual stream, GEMM inputs/outputs).
enum class ActDtype : uint8_t { kF32 = 0, kBF16 = 2 };

namespace detail {
// Records `what` as the last argument error and returns cudaErrorInvalidValue.
cudaError_t ArgumentError(const char* what);
}  // namespace detail

}  // namespace pdserve::kernels::gpu

// Inside a launcher: rejects the call with `what` (a string literal) unless `cond` holds.
#define PDSERVE_GPU_REQUIRE(cond, what)                          \
  do {                                                           \
    if (!(cond)) return ::pdserve::kernels::gpu::detail::ArgumentError(what); \
  } while (0)
