#pragma once
// Owned CUDA allocations: device memory (DeviceBuffer, cudaMalloc) and page-locked host memory
// (PinnedHostBuffer, cudaMallocHost: what a host<->device copy needs to run asynchronously and at
// full bus speed). Freed with the object; move-only.

#include <cstddef>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace pdserve::engine::cuda {

// How one kind of memory is allocated and freed; `kind` names it in errors.
struct DeviceMemory {
  static constexpr const char* kind = "device memory";
  static int Allocate(void** ptr, size_t bytes);  // a cudaError_t
  static void Free(void* ptr);
};
struct PinnedHostMemory {
  static constexpr const char* kind = "pinned host memory";
  static int Allocate(void** ptr, size_t bytes);
  static void Free(void* ptr);
};

template <typename Memory>
class CudaAllocation {
 public:
  CudaAllocation() = default;
  ~CudaAllocation();
  CudaAllocation(CudaAllocation&& other) noexcept;
  CudaAllocation& operator=(CudaAllocation&& other) noexcept;
  CudaAllocation(const CudaAllocation&) = delete;
  CudaAllocation& operator=(const CudaAllocation&) = delete;

  // `bytes` of memory, not initialised; `what` names it in an out-of-memory error.
  static absl::StatusOr<CudaAllocation> Allocate(size_t bytes, const std::string& what);

  // Makes the allocation at least `bytes` long; a grown one is new memory (contents lost).
  // Work queued on a stream that still uses the old memory must have finished.
  absl::Status Reserve(size_t bytes, const std::string& what);

  void* get() const { return ptr_; }
  template <typename T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }
  size_t size() const { return bytes_; }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

using DeviceBuffer = CudaAllocation<DeviceMemory>;
using PinnedHostBuffer = CudaAllocation<PinnedHostMemory>;

extern template class CudaAllocation<DeviceMemory>;
extern template class CudaAllocation<PinnedHostMemory>;

}  // namespace pdserve::engine::cuda
