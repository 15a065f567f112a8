#pragma once
// The KV block layout of docs/kv-layout.md (version 1): the contract shared by the engine, the
// transfer between nodes and cross-request reuse.

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "kernels/cpu/paged_attention.h"

namespace pdserve::kv {

inline constexpr uint32_t kKvLayoutVersion = 1;
inline constexpr int kDefaultBlockSize = 16;

// One block holds block_size consecutive token positions of one sequence for every layer:
//   block[layer][kv (0 = K, 1 = V)][token in block][kv_head][head_dim]
// in `dtype`, little-endian, densely packed.
struct KvLayout {
  int n_layers = 0;
  int n_kv_heads = 0;
  int head_dim = 0;
  int block_size = kDefaultBlockSize;
  kernels::KvDtype dtype = kernels::KvDtype::kF32;

  size_t ElementBytes() const;
  // 2 × layers × kv_heads × head_dim × bytes per element.
  size_t BytesPerToken() const;
  // Bytes of one layer's K (or V) slab in a block: block_size × kv_heads × head_dim × elem.
  size_t SlabBytes() const;
  size_t BlockBytes() const;  // n_layers × 2 × SlabBytes()
  size_t KSlabOffset(int layer) const;  // from the block's start
  size_t VSlabOffset(int layer) const;

  // OK when every dimension is positive, dtype is known and BlockBytes() does not overflow;
  // otherwise InvalidArgument naming the field. The methods above assume a valid layout.
  absl::Status Validate() const;
  // "layers=30 kv_heads=3 head_dim=64 block_size=16 dtype=f32": for logs and mismatch errors.
  std::string DebugString() const;

  // Peers exchanging blocks must have equal layouts (and equal kKvLayoutVersion).
  friend bool operator==(const KvLayout&, const KvLayout&) = default;
};

absl::StatusOr<kernels::KvDtype> ParseKvDtype(absl::string_view name);  // "f32" | "f16" | "bf16"
std::string KvDtypeName(kernels::KvDtype dtype);

}  // namespace pdserve::kv
