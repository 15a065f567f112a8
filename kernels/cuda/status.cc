#include "kernels/cuda/status.h"

namespace pdserve::kernels::gpu {
namespace {
thread_local const char* last_argument_error = "";
}  // namespace

const char* LastArgumentError() { return last_argument_error; }

namespace detail {
cudaError_t ArgumentError(const char* what) {
  last_argument_error = what != nullptr ? what : "";
  return cudaErrorInvalidValue;
}
}  // namespace detail

}  // namespace pdserve::kernels::gpu
