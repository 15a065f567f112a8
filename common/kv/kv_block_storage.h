#pragma once
// Where a KV block pool's bytes live: host memory (the CPU backend) or device memory (the CUDA
// backend, common/engine/cuda). The pool keeps the accounting; a storage only holds bytes and
// moves them to and from the host. Byte b of block `id` is at offset id * block_bytes + b.

#include <cstddef>
#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include "absl/types/span.h"

namespace pdserve::kv {

class KvBlockStorage {
 public:
  virtual ~KvBlockStorage() = default;

  // Bytes held.
  virtual size_t size() const = 0;
  // Address of byte 0 in the storage's own memory (a device address for device storage).
  virtual uint8_t* data() = 0;
  // True when data() is a host address that the CPU may read and write.
  virtual bool host_addressable() const = 0;

  // Copies [offset, offset + out.size()) to the host, or [offset, offset + in.size()) from it,
  // or sets [offset, offset + bytes) to zero. Each has finished when it returns. Ranges past
  // size() are OutOfRange; device errors are Internal with the runtime's message.
  virtual absl::Status CopyToHost(size_t offset, absl::Span<uint8_t> out) const = 0;
  virtual absl::Status CopyFromHost(size_t offset, absl::Span<const uint8_t> in) = 0;
  virtual absl::Status Zero(size_t offset, size_t bytes) = 0;
};

// `bytes` of zeroed host memory.
std::unique_ptr<KvBlockStorage> MakeHostKvStorage(size_t bytes);

// OutOfRange unless [offset, offset + bytes) lies within [0, size): the check every storage makes.
absl::Status CheckStorageRange(size_t offset, size_t bytes, size_t size);

}  // namespace pdserve::kv
