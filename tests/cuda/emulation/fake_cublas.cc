// The cuBLAS calls that kernels/cuda/gemm.cc and its callers make, as host fakes for the
// emulation build (tests/cuda/emulation): a handle is a real heap object holding what was set on
// it, so AddressSanitizer pairs every cublasCreate with its cublasDestroy and catches a use after
// destroy; cublasGemmEx computes on the host the cases gemm.cc asks for. Linked instead of
// libcublas, never beside it; the declarations are the toolkit's (cublas_v2.h maps cublasCreate
// to cublasCreate_v2 and so on).

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>
#include <vector>

#include "kernels/cuda/host_emulation.h"

namespace {

float LoadElement(const void* base, cudaDataType type, int64_t i) {
  if (type == CUDA_R_32F) {
    float f;
    std::memcpy(&f, static_cast<const float*>(base) + i, 4);
    return f;
  }
  uint16_t bits;  // CUDA_R_16BF
  std::memcpy(&bits, static_cast<const uint16_t*>(base) + i, 2);
  const uint32_t u = uint32_t{bits} << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

void StoreElement(void* base, cudaDataType type, int64_t i, float f) {
  if (type == CUDA_R_32F) {
    std::memcpy(static_cast<float*>(base) + i, &f, 4);
    return;
  }
  uint32_t u;  // CUDA_R_16BF, rounded to nearest even; NaN stays NaN
  std::memcpy(&u, &f, 4);
  const uint16_t bits = (u & 0x7fffffffu) > 0x7f800000u
                            ? static_cast<uint16_t>((u >> 16) | 0x0040u)
                            : static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
  std::memcpy(static_cast<uint16_t*>(base) + i, &bits, 2);
}

}  // namespace

// What a handle remembers: the settings the real library would apply to later calls.
struct cublasContext {
  cudaStream_t stream = nullptr;
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
  cublasMath_t math_mode = CUBLAS_DEFAULT_MATH;
};

extern "C" {

cublasStatus_t CUBLASWINAPI cublasCreate_v2(cublasHandle_t* handle) {
  if (handle == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
  *handle = new (std::nothrow) cublasContext();
  return *handle != nullptr ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_ALLOC_FAILED;
}

cublasStatus_t CUBLASWINAPI cublasDestroy_v2(cublasHandle_t handle) {
  if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
  delete handle;
  return CUBLAS_STATUS_SUCCESS;
}

// As documented for cuBLAS, setting the stream also drops a workspace set by cublasSetWorkspace
// (back to the library's default pool).
cublasStatus_t CUBLASWINAPI cublasSetStream_v2(cublasHandle_t handle, cudaStream_t stream) {
  if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
  handle->stream = stream;
  handle->workspace = nullptr;
  handle->workspace_bytes = 0;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t CUBLASWINAPI cublasGetStream_v2(cublasHandle_t handle, cudaStream_t* stream) {
  if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (stream == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
  *stream = handle->stream;
  return CUBLAS_STATUS_SUCCESS;
}

// The emulated GEMM needs no scratch memory: the workspace is only recorded. cuBLAS requires it
// 256-byte aligned.
cublasStatus_t CUBLASWINAPI cublasSetWorkspace_v2(cublasHandle_t handle, void* workspace,
                                                  size_t workspace_bytes) {
  if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (reinterpret_cast<uintptr_t>(workspace) % 256 != 0) return CUBLAS_STATUS_INVALID_VALUE;
  handle->workspace = workspace;
  handle->workspace_bytes = workspace_bytes;
  return CUBLAS_STATUS_SUCCESS;
}

// The emulated GEMM always accumulates and reduces in f32, whatever the mode says.
cublasStatus_t CUBLASWINAPI cublasSetMathMode(cublasHandle_t handle, cublasMath_t mode) {
  if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
  handle->math_mode = mode;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t CUBLASWINAPI cublasGetMathMode(cublasHandle_t handle, cublasMath_t* mode) {
  if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (mode == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
  *mode = handle->math_mode;
  return CUBLAS_STATUS_SUCCESS;
}

// C (m × n, column-major) = alpha · op(A) · op(B) + beta · C for op(A) = Aᵀ, op(B) = B (the only
// form gemm.cc uses), A and B both f32 or both bf16, C f32 or bf16, f32 compute. Each element is
// one f32 sum over k in order (no split-K: deterministic, independent of the rest of the call);
// alpha must be 1 and beta 0. Anything else is CUBLAS_STATUS_NOT_SUPPORTED.
cublasStatus_t CUBLASWINAPI cublasGemmEx(cublasHandle_t handle, cublasOperation_t transa,
                                         cublasOperation_t transb, int m, int n, int k,
                                         const void* alpha, const void* A, cudaDataType Atype,
                                         int lda, const void* B, cudaDataType Btype, int ldb,
                                         const void* beta, void* C, cudaDataType Ctype, int ldc,
                                         cublasComputeType_t computeType,
                                         cublasGemmAlgo_t /*algo*/) {
  if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (m < 0 || n < 0 || k < 0 || lda < k || ldb < k || ldc < m) return CUBLAS_STATUS_INVALID_VALUE;
  const bool types_ok = Atype == Btype && (Atype == CUDA_R_32F || Atype == CUDA_R_16BF) &&
                        (Ctype == CUDA_R_32F || Ctype == CUDA_R_16BF);
  if (transa != CUBLAS_OP_T || transb != CUBLAS_OP_N || !types_ok ||
      computeType != CUBLAS_COMPUTE_32F || *static_cast<const float*>(alpha) != 1.0f ||
      *static_cast<const float*>(beta) != 0.0f) {
    return CUBLAS_STATUS_NOT_SUPPORTED;
  }
  if (::pdserve::kernels::gpu::emu::Capturing()) {
    const float one = 1.0f;
    const float zero = 0.0f;
    ::pdserve::kernels::gpu::emu::Record([=] {
      cublasGemmEx(handle, transa, transb, m, n, k, &one, A, Atype, lda, B, Btype, ldb, &zero, C,
                   Ctype, ldc, computeType, CUBLAS_GEMM_DEFAULT);
    });
    return CUBLAS_STATUS_SUCCESS;
  }
  std::vector<float> a_col(static_cast<size_t>(k));
  for (int i = 0; i < m; ++i) {
    for (int kk = 0; kk < k; ++kk) a_col[kk] = LoadElement(A, Atype, int64_t{i} * lda + kk);
    for (int j = 0; j < n; ++j) {
      float acc = 0.0f;
      for (int kk = 0; kk < k; ++kk) {
        acc += a_col[kk] * LoadElement(B, Btype, int64_t{j} * ldb + kk);
      }
      StoreElement(C, Ctype, int64_t{j} * ldc + i, acc);
    }
  }
  return CUBLAS_STATUS_SUCCESS;
}

}  // extern "C"
