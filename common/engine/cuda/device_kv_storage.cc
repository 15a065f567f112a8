#include "common/engine/cuda/device_kv_storage.h"

#include <cuda_runtime_api.h>

#include <cstring>
#include <mutex>
#include <utility>
#include <vector>

#include "common/engine/cuda/cuda_status.h"
#include "common/engine/cuda/device_buffer.h"
#include "kernels/cuda/kv_blocks.h"

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

  // A gather into device staging, then one copy to pinned host memory (one bus crossing for
  // all the blocks), then out of it into the caller's spans.
  absl::Status CopyBlocksToHost(absl::Span<const int32_t> ids, size_t block_bytes,
                                absl::Span<const absl::Span<uint8_t>> out) const override {
    if (absl::Status s = kv::CheckStorageBlocks(ids, block_bytes, size_); !s.ok()) return s;
    if (ids.empty()) return absl::OkStatus();
    const std::string what = "reading KV blocks from the device";
    std::lock_guard<std::mutex> lock(staging_mutex_);
    const size_t bytes = ids.size() * block_bytes;
    if (absl::Status s = PrepareStaging(ids, bytes, what); !s.ok()) return s;
    PDSERVE_RETURN_IF_CUDA_ERROR(
        kernels::gpu::GatherBlocks(buffer_.as<uint8_t>(), NumBlocks(block_bytes), block_bytes,
                                   device_ids_.as<int32_t>(), static_cast<int>(ids.size()),
                                   device_staging_.as<uint8_t>(), nullptr),
        what);
    PDSERVE_RETURN_IF_CUDA_ERROR(cudaMemcpyAsync(host_staging_.get(), device_staging_.get(), bytes,
                                                 cudaMemcpyDeviceToHost, nullptr),
                                 what);
    PDSERVE_RETURN_IF_CUDA_ERROR(cudaStreamSynchronize(nullptr), what);
    for (size_t i = 0; i < ids.size(); ++i) {
      std::memcpy(out[i].data(), host_staging_.as<uint8_t>() + i * block_bytes, block_bytes);
    }
    return absl::OkStatus();
  }

  // The inverse: into pinned memory, one copy to device staging, a scatter into the pool.
  absl::Status CopyBlocksFromHost(absl::Span<const int32_t> ids, size_t block_bytes,
                                  absl::Span<const absl::Span<const uint8_t>> in) override {
    if (absl::Status s = kv::CheckStorageBlocks(ids, block_bytes, size_); !s.ok()) return s;
    if (ids.empty()) return absl::OkStatus();
    const std::string what = "writing KV blocks to the device";
    std::lock_guard<std::mutex> lock(staging_mutex_);
    const size_t bytes = ids.size() * block_bytes;
    if (absl::Status s = PrepareStaging(ids, bytes, what); !s.ok()) return s;
    for (size_t i = 0; i < ids.size(); ++i) {
      std::memcpy(host_staging_.as<uint8_t>() + i * block_bytes, in[i].data(), block_bytes);
    }
    PDSERVE_RETURN_IF_CUDA_ERROR(cudaMemcpyAsync(device_staging_.get(), host_staging_.get(), bytes,
                                                 cudaMemcpyHostToDevice, nullptr),
                                 what);
    PDSERVE_RETURN_IF_CUDA_ERROR(
        kernels::gpu::ScatterBlocks(device_staging_.as<uint8_t>(), NumBlocks(block_bytes),
                                    block_bytes, device_ids_.as<int32_t>(),
                                    static_cast<int>(ids.size()), buffer_.as<uint8_t>(),
                                    nullptr),
        what);
    // The forward pass's non-blocking stream does not wait for the default stream.
    PDSERVE_RETURN_IF_CUDA_ERROR(cudaStreamSynchronize(nullptr), what);
    return absl::OkStatus();
  }

 private:
  int64_t NumBlocks(size_t block_bytes) const {
    return static_cast<int64_t>(size_ / block_bytes);
  }

  // Makes the staging hold ids.size() ids and `bytes` of blocks on both sides (it grows, never
  // shrinks: a transfer chunk is a few blocks), then copies the ids to pinned memory and queues
  // them for the device on the default stream, where the gather or scatter that reads them runs.
  // Called with staging_mutex_ held.
  absl::Status PrepareStaging(absl::Span<const int32_t> ids, size_t bytes,
                              const std::string& what) const {
    const size_t id_bytes = ids.size() * sizeof(int32_t);
    for (absl::Status s :
         {device_staging_.Reserve(bytes, what), device_ids_.Reserve(id_bytes, what),
          host_staging_.Reserve(bytes, what), host_ids_.Reserve(id_bytes, what)}) {
      if (!s.ok()) return s;
    }
    std::memcpy(host_ids_.get(), ids.data(), id_bytes);
    PDSERVE_RETURN_IF_CUDA_ERROR(cudaMemcpyAsync(device_ids_.get(), host_ids_.get(), id_bytes,
                                                 cudaMemcpyHostToDevice, nullptr),
                                 what);
    return absl::OkStatus();
  }

  DeviceBuffer buffer_;
  size_t size_;
  // Staging for CopyBlocksToHost / CopyBlocksFromHost, used by one caller at a time (mutable:
  // reading the pool uses it too).
  mutable std::mutex staging_mutex_;
  mutable DeviceBuffer device_staging_;
  mutable DeviceBuffer device_ids_;
  mutable PinnedHostBuffer host_staging_;
  mutable PinnedHostBuffer host_ids_;
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
