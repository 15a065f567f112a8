#include "common/kv_transfer/shm/shm_kv_storage.h"

#include <cstring>
#include <utility>

namespace pdserve::kv_transfer {

absl::StatusOr<std::unique_ptr<SharedMemoryKvStorage>> SharedMemoryKvStorage::Create(
    size_t bytes) {
  absl::StatusOr<SharedMemoryRegion> region = SharedMemoryRegion::Create(bytes);
  if (!region.ok()) return region.status();
  return std::unique_ptr<SharedMemoryKvStorage>(
      new SharedMemoryKvStorage(*std::move(region)));
}

absl::Status SharedMemoryKvStorage::CopyToHost(size_t offset, absl::Span<uint8_t> out) const {
  if (absl::Status s = kv::CheckStorageRange(offset, out.size(), size()); !s.ok()) return s;
  if (!out.empty()) std::memcpy(out.data(), region_.data() + offset, out.size());
  return absl::OkStatus();
}

absl::Status SharedMemoryKvStorage::CopyFromHost(size_t offset, absl::Span<const uint8_t> in) {
  if (absl::Status s = kv::CheckStorageRange(offset, in.size(), size()); !s.ok()) return s;
  if (!in.empty()) std::memcpy(region_.data() + offset, in.data(), in.size());
  return absl::OkStatus();
}

absl::Status SharedMemoryKvStorage::Zero(size_t offset, size_t bytes) {
  if (absl::Status s = kv::CheckStorageRange(offset, bytes, size()); !s.ok()) return s;
  if (bytes > 0) std::memset(region_.data() + offset, 0, bytes);
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<kv::KvBlockStorage>> MakeSharedMemoryKvStorage(size_t bytes) {
  absl::StatusOr<std::unique_ptr<SharedMemoryKvStorage>> storage =
      SharedMemoryKvStorage::Create(bytes);
  if (!storage.ok()) return storage.status();
  return std::unique_ptr<kv::KvBlockStorage>(*std::move(storage));
}

}  // namespace pdserve::kv_transfer
