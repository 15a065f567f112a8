#include "common/engine/cuda/device_buffer.h"

#include <cuda_runtime_api.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/engine/cuda/cuda_status.h"

namespace pdserve::engine::cuda {

int DeviceMemory::Allocate(void** ptr, size_t bytes) { return cudaMalloc(ptr, bytes); }
void DeviceMemory::Free(void* ptr) { cudaFree(ptr); }
int PinnedHostMemory::Allocate(void** ptr, size_t bytes) { return cudaMallocHost(ptr, bytes); }
void PinnedHostMemory::Free(void* ptr) { cudaFreeHost(ptr); }

template <typename Memory>
CudaAllocation<Memory>::~CudaAllocation() {
  if (ptr_ != nullptr) Memory::Free(ptr_);
}

template <typename Memory>
CudaAllocation<Memory>::CudaAllocation(CudaAllocation&& other) noexcept
    : ptr_(std::exchange(other.ptr_, nullptr)), bytes_(std::exchange(other.bytes_, 0)) {}

template <typename Memory>
CudaAllocation<Memory>& CudaAllocation<Memory>::operator=(CudaAllocation&& other) noexcept {
  if (this != &other) {
    if (ptr_ != nullptr) Memory::Free(ptr_);
    ptr_ = std::exchange(other.ptr_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
  }
  return *this;
}

template <typename Memory>
absl::StatusOr<CudaAllocation<Memory>> CudaAllocation<Memory>::Allocate(size_t bytes,
                                                                        const std::string& what) {
  CudaAllocation allocation;
  if (absl::Status s = allocation.Reserve(bytes, what); !s.ok()) return s;
  return allocation;
}

template <typename Memory>
absl::Status CudaAllocation<Memory>::Reserve(size_t bytes, const std::string& what) {
  if (bytes <= bytes_ && ptr_ != nullptr) return absl::OkStatus();
  if (ptr_ != nullptr) {
    Memory::Free(ptr_);
    ptr_ = nullptr;
    bytes_ = 0;
  }
  void* p = nullptr;
  PDSERVE_RETURN_IF_CUDA_ERROR(
      static_cast<cudaError_t>(Memory::Allocate(&p, bytes == 0 ? 1 : bytes)),
      absl::StrCat("allocating ", bytes, " bytes of ", Memory::kind, " for ", what));
  ptr_ = p;
  bytes_ = bytes;
  return absl::OkStatus();
}

template class CudaAllocation<DeviceMemory>;
template class CudaAllocation<PinnedHostMemory>;

}  // namespace pdserve::engine::cuda
