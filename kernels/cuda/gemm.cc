#include "kernels/cuda/gemm.h"

#include <climits>

namespace pdserve::kernels::gpu {
namespace {

// y (n_tokens, rows) = x (n_tokens, cols) · wᵀ with x and w of cuBLAS type `in_type`, y of
// `y_type`, f32 accumulation.
cudaError_t Gemm(cublasHandle_t handle, const void* x, int64_t n_tokens,
                 const void* w, int64_t rows, int64_t cols, cudaDataType_t in_type, void* y,
                 cudaDataType_t y_type, cudaStream_t stream) {
  if (handle == nullptr) return detail::ArgumentError("gemm: cuBLAS handle is null");
  if (n_tokens < 0 || rows <= 0 || cols <= 0) {
    return detail::ArgumentError("gemm: n_tokens must be >= 0, rows and cols > 0");
  }
  if (n_tokens > INT_MAX || rows > INT_MAX || cols > INT_MAX) {
    return detail::ArgumentError("gemm: dimension exceeds INT_MAX");
  }
  if (n_tokens == 0) return cudaSuccess;
  if (x == nullptr || w == nullptr || y == nullptr) {
    return detail::ArgumentError("gemm: null pointer");
  }
  // Binding a handle to a stream drops the workspace given to cublasSetWorkspace (back to
  // cuBLAS's own pool), so the handle is rebound only when the stream changes: a caller that set
  // a workspace for its stream (what CUDA-graph capture wants) keeps it.
  cudaStream_t bound = nullptr;
  if (cublasGetStream(handle, &bound) != CUBLAS_STATUS_SUCCESS ||
      (bound != stream && cublasSetStream(handle, stream) != CUBLAS_STATUS_SUCCESS)) {
    return detail::ArgumentError("gemm: cublasSetStream failed");
  }
  // Split-K partial sums stay in f32 (by default cuBLAS may reduce them in the output type,
  // bf16), and f32 inputs are not rounded to TF32 (default math, no tensor-op math).
  if (cublasSetMathMode(handle, static_cast<cublasMath_t>(
                                    CUBLAS_DEFAULT_MATH |
                                    CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION)) !=
      CUBLAS_STATUS_SUCCESS) {
    return detail::ArgumentError("gemm: cublasSetMathMode failed");
  }
  // Column-major view: w is (cols, rows), x is (cols, n_tokens), y is (rows, n_tokens):
  // y = op(w)ᵀ · x with op = transpose.
  const float alpha = 1.0f;
  const float beta = 0.0f;
  const cublasStatus_t status = cublasGemmEx(
      handle, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(rows), static_cast<int>(n_tokens),
      static_cast<int>(cols), &alpha, w, in_type, static_cast<int>(cols), x, in_type,
      static_cast<int>(cols), &beta, y, y_type, static_cast<int>(rows), CUBLAS_COMPUTE_32F,
      CUBLAS_GEMM_DEFAULT);
  switch (status) {
    case CUBLAS_STATUS_SUCCESS:
      return cudaGetLastError();
    case CUBLAS_STATUS_INVALID_VALUE:
      return detail::ArgumentError("gemm: cublasGemmEx: invalid value");
    case CUBLAS_STATUS_NOT_SUPPORTED:
      return detail::ArgumentError("gemm: cublasGemmEx: not supported");
    case CUBLAS_STATUS_EXECUTION_FAILED:
      return cudaErrorLaunchFailure;
    default:
      return cudaErrorUnknown;
  }
}

}  // namespace

cudaError_t GemmBf16(cublasHandle_t handle, const __nv_bfloat16* x, int64_t n_tokens,
                     const __nv_bfloat16* w, int64_t rows, int64_t cols, void* y,
                     ActDtype y_dtype, cudaStream_t stream) {
  PDSERVE_GPU_REQUIRE(y_dtype == ActDtype::kF32 || y_dtype == ActDtype::kBF16,
                      "gemm_bf16: output dtype must be f32 or bf16");
  return Gemm(handle, x, n_tokens, w, rows, cols, CUDA_R_16BF, y,
              y_dtype == ActDtype::kF32 ? CUDA_R_32F : CUDA_R_16BF, stream);
}

cudaError_t GemmF32(cublasHandle_t handle, const float* x, int64_t n_tokens, const float* w,
                    int64_t rows, int64_t cols, float* y, cudaStream_t stream) {
  return Gemm(handle, x, n_tokens, w, rows, cols, CUDA_R_32F, y, CUDA_R_32F, stream);
}

}  // namespace pdserve::kernels::gpu
