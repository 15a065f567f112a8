#pragma once
// Where the model runs: the device switch (--device cpu|cuda) and the CUDA backend's factory.
// A backend is the KV block pool (its bytes in that device's memory) and the forward pass over it.

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "common/engine/forward_pass.h"
#include "common/kv/kv_block_pool.h"
#include "common/model/model_weights.h"

namespace pdserve::engine {

enum class Device { kCpu, kCuda };

// "cpu" or "cuda"; anything else is InvalidArgument naming the choices.
absl::StatusOr<Device> ParseDevice(std::string_view name);
const char* DeviceName(Device device);

// The CUDA backend's element type for weight matrices and activations: f32 (exact, slower) or
// bf16; auto picks f32 for a checkpoint whose matrices are all stored as f32, bf16 otherwise
// (quantized or half-precision files). The CPU backend always computes in f32.
enum class CudaDtype { kAuto, kF32, kBF16 };

// "auto", "f32" or "bf16"; anything else is InvalidArgument naming the choices.
absl::StatusOr<CudaDtype> ParseCudaDtype(std::string_view name);

struct CudaBackendOptions {
  CudaDtype dtype = CudaDtype::kAuto;
  // Decode steps replayed as CUDA graphs (captured per batch size and context bucket); false
  // launches every kernel of every step (--enforce-eager).
  bool graphs = true;
};

struct DeviceBackend {
  std::unique_ptr<kv::KvBlockPool> pool;
  std::unique_ptr<ForwardPass> forward;  // reads and writes *pool; declared after it
  std::string description;               // one line for logs: the device and the weights' size
};

// The CUDA backend on the current device: `weights` uploaded (the ModelWeights may be dropped
// afterwards only if nothing else reads them), a pool of n_blocks blocks of `layout` in device
// memory. FailedPrecondition when this build has no CUDA backend (-DPDSERVE_CUDA=OFF) or no
// usable GPU is found, with the reason.
absl::StatusOr<DeviceBackend> CreateCudaBackend(const model::ModelWeights& weights,
                                                const kv::KvLayout& layout, int64_t n_blocks,
                                                const CudaBackendOptions& options);

}  // namespace pdserve::engine
