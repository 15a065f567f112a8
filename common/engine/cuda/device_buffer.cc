#include "common/engine/cuda/device_buffer.h"

#include <cuda_runtime_api.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/engine/cuda/cuda_status.h"

namespace pdserve::engine::cuda {

DeviceBuffer::~DeviceBuffer() {
  if (ptr_ != nullptr) cudaFree(ptr_);
}

DeviceBuffer::DeviceBuffer(DeviceBuffer&& other) noexcept
    : ptr_(std::exchange(other.ptr_, nullptr)), bytes_(std::exchange(other.bytes_, 0)) {}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& other) noexcept {
  if (this != &other) {
    if (ptr_ != nullptr) cudaFree(ptr_);
    ptr_ = std::exchange(other.ptr_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
  }
  return *this;
}

absl::StatusOr<DeviceBuffer> DeviceBuffer::Allocate(size_t bytes, const std::string& what) {
  DeviceBuffer buffer;
  if (absl::Status s = buffer.Reserve(bytes, what); !s.ok()) return s;
  return buffer;
}

absl::Status DeviceBuffer::Reserve(size_t bytes, const std::string& what) {
  if (bytes <= bytes_ && ptr_ != nullptr) return absl::OkStatus();
  if (ptr_ != nullptr) {
    cudaFree(ptr_);
    ptr_ = nullptr;
    bytes_ = 0;
  }
  void* p = nullptr;
  PDSERVE_RETURN_IF_CUDA_ERROR(cudaMalloc(&p, bytes == 0 ? 1 : bytes),
                               absl::StrCat("allocating ", bytes, " bytes for ", what));
  ptr_ = p;
  bytes_ = bytes;
  return absl::OkStatus();
}

}  // namespace pdserve::engine::cuda
