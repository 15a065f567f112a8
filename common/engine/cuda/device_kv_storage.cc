#include "common/engine/cuda/device_kv_storage.h"

#include <cuda_runtime_api.h>

#include <utility>

#include "common/engine/cuda/cuda_status.h"
#include "common/engine/cuda/device_buffer.h"

namespace pdserve::engine::cuda {
namespace {

class DeviceKvStorage final : public kv::KvBlockStorage {
 public:
  explicit DeviceKvStorage(DeviceBuffer buffer, size_t bytes)
      : buffer_(std::move(buffer)), size_(bytes) {}

  size_t size() const override { return size_; }
  uint8_t* data() override { return buffer_.as<uint8_t>(); }
  bool host_addressable() const override { return false; }

  absl::Status CopyToHost(size_t offset, absl::Span<uint8_t> out) const override {
    if (absl::Status s = kv::CheckStorageRange(offset, out.size(), size_); !s.ok()) return s;
    if (out.empty()) return absl::OkStatus();
    PDSERVE_RETURN_IF_CUDA_ERROR(cudaMemcpy(out.data(), buffer_.as<uint8_t>() + offset,
                                            out.size(), cudaMemcpyDeviceToHost),
                                 "reading KV blocks from the device");
    return absl::OkStatus();
  }
  absl::Status CopyFromHost(size_t offset, absl::Span<const uint8_t> in) override {
    if (absl::Status s = kv::CheckStorageRange(offset, in.size(), size_); !s.ok()) return s;
    if (in.empty()) return absl::OkStatus();
    PDSERVE_RETURN_IF_CUDA_ERROR(cudaMemcpy(buffer_.as<uint8_t>() + offset, in.data(),
                                            in.size(), cudaMemcpyHostToDevice),
                                 "writing KV blocks to the device");
    // From pageable memory cudaMemcpy may return before its DMA lands, and the forward pass's
    // non-blocking stream does not wait for the default stream: wait here, for this copy only.
    PDSERVE_RETURN_IF_CUDA_ERROR(cudaStreamSynchronize(nullptr),
                                 "writing KV blocks to the device");
    return absl::OkStatus();
  }
  absl::Status Zero(size_t offset, size_t bytes) override {
    if (absl::Status s = kv::CheckStorageRange(offset, bytes, size_); !s.ok()) return s;
    if (bytes == 0) return absl::OkStatus();
    PDSERVE_RETURN_IF_CUDA_ERROR(cudaMemset(buffer_.as<uint8_t>() + offset, 0, bytes),
                                 "clearing KV blocks on the device");
    // cudaMemset may return before the device is done; Zero promises a finished write.
    PDSERVE_RETURN_IF_CUDA_ERROR(cudaStreamSynchronize(nullptr),
                                 "clearing KV blocks on the device");
    return absl::OkStatus();
  }

 private:
  DeviceBuffer buffer_;
  size_t size_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<kv::KvBlockStorage>> MakeDeviceKvStorage(size_t bytes) {
  absl::StatusOr<DeviceBuffer> buffer = DeviceBuffer::Allocate(bytes, "the KV block pool");
  if (!buffer.ok()) return buffer.status();
  PDSERVE_RETURN_IF_CUDA_ERROR(cudaMemset(buffer->get(), 0, bytes == 0 ? 1 : bytes),
                               "clearing the KV block pool");
  PDSERVE_RETURN_IF_CUDA_ERROR(cudaDeviceSynchronize(), "clearing the KV block pool");
  return std::make_unique<DeviceKvStorage>(*std::move(buffer), bytes);
}

}  // namespace pdserve::engine::cuda
