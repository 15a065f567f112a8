#include "kernels/cuda/gemm.h"

#include <climits>

namespace pdserve::kernels::gpu {

cudaError_t GemmBf16(cublasHandle_t handle, const __nv_bfloat16* x, int64_t n_tokens,
                     const __nv_bfloat16* w, int64_t rows, int64_t cols, void* y,
                     ActDtype y_dtype, cudaStream_t stream) {
  PDSERVE_GPU_REQUIRE(handle != nullptr, "gemm_bf16: cuBLAS handle is null");
  PDSERVE_GPU_REQUIRE(n_tokens >= 0 && rows > 0 && cols > 0,
                      "gemm_bf16: n_tokens must be >= 0, rows and cols > 0");
  PDSERVE_GPU_REQUIRE(n_tokens <= INT_MAX && rows <= INT_MAX && cols <= INT_MAX,
                      "gemm_bf16: dimension exceeds INT_MAX");
  PDSERVE_GPU_REQUIRE(y_dtype == ActDtype::kF32 || y_dtype == ActDtype::kBF16,
                      "gemm_bf16: output dtype must be f32 or bf16");
  if (n_tokens == 0) return cudaSuccess;
  PDSERVE_GPU_REQUIRE(x != nullptr && w != nullptr && y != nullptr, "gemm_bf16: null pointer");
  if (cublasSetStream(handle, stream) != CUBLAS_STATUS_SUCCESS) {
    return detail::ArgumentError("gemm_bf16: cublasSetStream failed");
  }
  // Split-K partial sums stay in f32: by default cuBLAS may reduce them in the output type (bf16).
  if (cublasSetMathMode(handle, static_cast<cublasMath_t>(
                                    CUBLAS_DEFAULT_MATH |
                                    CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION)) !=
      CUBLAS_STATUS_SUCCESS) {
    return detail::ArgumentError("gemm_bf16: cublasSetMathMode failed");
  }
  // Column-major view: w is (cols, rows), x is (cols, n_tokens), y is (rows, n_tokens):
  // y = op(w)ᵀ · x with op = transpose.
  const float alpha = 1.0f;
  const float beta = 0.0f;
  const cublasStatus_t status = cublasGemmEx(
      handle, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(rows), static_cast<int>(n_tokens),
      static_cast<int>(cols), &alpha, w, CUDA_R_16BF, static_cast<int>(cols), x, CUDA_R_16BF,
      static_cast<int>(cols), &beta, y, y_dtype == ActDtype::kF32 ? CUDA_R_32F : CUDA_R_16BF,
      static_cast<int>(rows), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
  switch (status) {
    case CUBLAS_STATUS_SUCCESS:
      return cudaGetLastError();
    case CUBLAS_STATUS_INVALID_VALUE:
      return detail::ArgumentError("gemm_bf16: cublasGemmEx: invalid value");
    case CUBLAS_STATUS_NOT_SUPPORTED:
      return detail::ArgumentError("gemm_bf16: cublasGemmEx: not supported");
    case CUBLAS_STATUS_EXECUTION_FAILED:
      return cudaErrorLaunchFailure;
    default:
      return cudaErrorUnknown;
  }
}

}  // namespace pdserve::kernels::gpu
