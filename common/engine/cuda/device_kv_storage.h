#pragma once
// KV pool bytes in device memory (one cudaMalloc), for the CUDA backend.

#include <cstddef>
#include <memory>

#include "absl/status/statusor.h"
#include "common/kv/kv_block_storage.h"

namespace pdserve::engine::cuda {

// `bytes` of zeroed device memory on the current device. Copies to and from the host, and
// Zero, have finished on the device when they return (default stream, then synchronized with
// it); a read after Forward sees its K/V, since Forward returns only once its stream is done.
absl::StatusOr<std::unique_ptr<kv::KvBlockStorage>> MakeDeviceKvStorage(size_t bytes);

}  // namespace pdserve::engine::cuda
