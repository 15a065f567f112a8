#pragma once
// A KV block pool's bytes in a POSIX shared-memory object (shared_memory_region.h), so that a
// prefill worker on the same host can map them by name and write block bytes in place. Byte
// layout and accounting are the pool's, exactly as with host memory (docs/kv-layout.md).

#include <cstddef>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "common/kv/kv_block_storage.h"
#include "common/kv_transfer/shm/shared_memory_region.h"

namespace pdserve::kv_transfer {

// Host-addressable storage over a region it creates and owns: the object's name lives, and the
// memory stays mapped, as long as this storage (so as long as the pool holding it). Thread-safety
// is KvBlockStorage's: the copies take no lock; ordering writers of one block, here or in another
// process, is the caller's.
class SharedMemoryKvStorage final : public kv::KvBlockStorage {
 public:
  // `bytes` zeroed bytes in a new region; errors are SharedMemoryRegion::Create's.
  static absl::StatusOr<std::unique_ptr<SharedMemoryKvStorage>> Create(size_t bytes);

  // The object's name ("/pdserve-kv-..."), what another process passes to
  // SharedMemoryRegion::Open to map these bytes.
  const std::string& region_name() const { return region_.name(); }

  size_t size() const override { return region_.size(); }
  uint8_t* data() override { return region_.data(); }
  bool host_addressable() const override { return true; }
  absl::Status CopyToHost(size_t offset, absl::Span<uint8_t> out) const override;
  absl::Status CopyFromHost(size_t offset, absl::Span<const uint8_t> in) override;
  absl::Status Zero(size_t offset, size_t bytes) override;

 private:
  explicit SharedMemoryKvStorage(SharedMemoryRegion region) : region_(std::move(region)) {}

  SharedMemoryRegion region_;
};

// As SharedMemoryKvStorage::Create, typed like kv::MakeHostKvStorage for callers that need no
// name.
absl::StatusOr<std::unique_ptr<kv::KvBlockStorage>> MakeSharedMemoryKvStorage(size_t bytes);

}  // namespace pdserve::kv_transfer
