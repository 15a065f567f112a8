#pragma once
// KV pool bytes in device memory (one cudaMalloc), for the CUDA backend.

#include <cstddef>
#include <memory>

#include "absl/status/statusor.h"
#include "common/kv/kv_block_storage.h"

namespace pdserve::engine::cuda {

// `bytes` of zeroed device memory on the current device. Copies to and from the host are
// synchronous (cudaMemcpy on the default stream): callers order them after the forward passes
// that write the blocks, which finish before Forward returns.
absl::StatusOr<std::unique_ptr<kv::KvBlockStorage>> MakeDeviceKvStorage(size_t bytes);

}  // namespace pdserve::engine::cuda
