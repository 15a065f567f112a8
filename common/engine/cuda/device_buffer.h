#pragma once
// One cudaMalloc allocation, owned: freed with the object. Move-only.

#include <cstddef>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace pdserve::engine::cuda {

class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  ~DeviceBuffer();
  DeviceBuffer(DeviceBuffer&& other) noexcept;
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  // `bytes` of device memory, not initialised; `what` names it in an out-of-memory error.
  static absl::StatusOr<DeviceBuffer> Allocate(size_t bytes, const std::string& what);

  // Makes the buffer at least `bytes` long; a grown buffer is new memory (contents lost).
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

}  // namespace pdserve::engine::cuda
