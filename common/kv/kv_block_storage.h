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

  // Whole blocks of `block_bytes` each, in one call: out[i] = the bytes of block ids[i], or
  // block ids[i] = in[i]. Preconditions (the pool checks them): ids.size() equals the number of
  // spans, every span is block_bytes long, and for CopyBlocksFromHost the ids are distinct.
  // An id whose block lies past size() is OutOfRange and nothing is copied. Finished when they
  // return. This default copies block by block; a device storage overrides it to gather the
  // blocks on the device and cross the bus once (the unit a KV transfer moves).
  virtual absl::Status CopyBlocksToHost(absl::Span<const int32_t> ids, size_t block_bytes,
                                        absl::Span<const absl::Span<uint8_t>> out) const;
  virtual absl::Status CopyBlocksFromHost(absl::Span<const int32_t> ids, size_t block_bytes,
                                          absl::Span<const absl::Span<const uint8_t>> in);
};

// `bytes` of zeroed host memory.
std::unique_ptr<KvBlockStorage> MakeHostKvStorage(size_t bytes);

// OutOfRange unless [offset, offset + bytes) lies within [0, size): the check every storage makes.
absl::Status CheckStorageRange(size_t offset, size_t bytes, size_t size);
// OutOfRange unless every block ids[i] of `block_bytes` lies within [0, size).
absl::Status CheckStorageBlocks(absl::Span<const int32_t> ids, size_t block_bytes, size_t size);

}  // namespace pdserve::kv
