#include "common/kv/kv_layout.h"

#include <cstdint>
#include <limits>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace pdserve::kv {

size_t KvLayout::ElementBytes() const {
  // Kept here rather than calling kernels::KvDtypeBytes so that pdserve_kv does not link the
  // kernels: the layout contract only needs the enum.
  switch (dtype) {
    case kernels::KvDtype::kF32:
      return 4;
    case kernels::KvDtype::kF16:
    case kernels::KvDtype::kBF16:
      return 2;
  }
  return 0;  // unknown dtype: Validate() rejects it
}

size_t KvLayout::BytesPerToken() const {
  return 2 * static_cast<size_t>(n_layers) * static_cast<size_t>(n_kv_heads) *
         static_cast<size_t>(head_dim) * ElementBytes();
}

size_t KvLayout::SlabBytes() const {
  return static_cast<size_t>(block_size) * static_cast<size_t>(n_kv_heads) *
         static_cast<size_t>(head_dim) * ElementBytes();
}

size_t KvLayout::BlockBytes() const { return static_cast<size_t>(n_layers) * 2 * SlabBytes(); }

size_t KvLayout::KSlabOffset(int layer) const {
  return static_cast<size_t>(layer) * 2 * SlabBytes();
}

size_t KvLayout::VSlabOffset(int layer) const { return KSlabOffset(layer) + SlabBytes(); }

absl::Status KvLayout::Validate() const {
  const struct {
    const char* name;
    int value;
  } dims[] = {{"n_layers", n_layers},
              {"n_kv_heads", n_kv_heads},
              {"head_dim", head_dim},
              {"block_size", block_size}};
  for (const auto& dim : dims) {
    if (dim.value <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("KV layout: ", dim.name, " is ", dim.value, ", must be > 0"));
    }
  }
  if (ElementBytes() == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "KV layout: dtype ", static_cast<int>(dtype), " is unknown (f32, f16 or bf16)"));
  }
  // BlockBytes() = 2 * n_layers * block_size * n_kv_heads * head_dim * elem, with no overflow.
  unsigned __int128 bytes = 2;
  for (const auto& dim : dims) bytes *= static_cast<unsigned __int128>(dim.value);
  bytes *= ElementBytes();
  if (bytes > std::numeric_limits<int64_t>::max()) {
    return absl::InvalidArgumentError(
        absl::StrCat("KV layout: block bytes overflow (", DebugString(), ")"));
  }
  return absl::OkStatus();
}

std::string KvLayout::DebugString() const {
  return absl::StrCat("layers=", n_layers, " kv_heads=", n_kv_heads, " head_dim=", head_dim,
                      " block_size=", block_size, " dtype=", KvDtypeName(dtype));
}

absl::StatusOr<kernels::KvDtype> ParseKvDtype(absl::string_view name) {
  if (name == "f32") return kernels::KvDtype::kF32;
  if (name == "f16") return kernels::KvDtype::kF16;
  if (name == "bf16") return kernels::KvDtype::kBF16;
  return absl::InvalidArgumentError(
      absl::StrCat("KV dtype '", name, "' is not one of f32, f16, bf16"));
}

std::string KvDtypeName(kernels::KvDtype dtype) {
  switch (dtype) {
    case kernels::KvDtype::kF32:
      return "f32";
    case kernels::KvDtype::kF16:
      return "f16";
    case kernels::KvDtype::kBF16:
      return "bf16";
  }
  return absl::StrCat("unknown(", static_cast<int>(dtype), ")");
}

}  // namespace pdserve::kv
