#include "common/kv/kv_block_storage.h"

#include <cstring>

#include "absl/strings/str_cat.h"

namespace pdserve::kv {
namespace {

class HostKvStorage final : public KvBlockStorage {
 public:
  explicit HostKvStorage(size_t bytes) : bytes_(new uint8_t[bytes]()), size_(bytes) {}

  size_t size() const override { return size_; }
  uint8_t* data() override { return bytes_.get(); }
  bool host_addressable() const override { return true; }

  absl::Status CopyToHost(size_t offset, absl::Span<uint8_t> out) const override {
    if (absl::Status s = CheckStorageRange(offset, out.size(), size_); !s.ok()) return s;
    if (!out.empty()) std::memcpy(out.data(), bytes_.get() + offset, out.size());
    return absl::OkStatus();
  }
  absl::Status CopyFromHost(size_t offset, absl::Span<const uint8_t> in) override {
    if (absl::Status s = CheckStorageRange(offset, in.size(), size_); !s.ok()) return s;
    if (!in.empty()) std::memcpy(bytes_.get() + offset, in.data(), in.size());
    return absl::OkStatus();
  }
  absl::Status Zero(size_t offset, size_t bytes) override {
    if (absl::Status s = CheckStorageRange(offset, bytes, size_); !s.ok()) return s;
    if (bytes > 0) std::memset(bytes_.get() + offset, 0, bytes);
    return absl::OkStatus();
  }

 private:
  std::unique_ptr<uint8_t[]> bytes_;
  size_t size_;
};

}  // namespace

absl::Status KvBlockStorage::CopyBlocksToHost(absl::Span<const int32_t> ids, size_t block_bytes,
                                              absl::Span<const absl::Span<uint8_t>> out) const {
  if (absl::Status s = CheckStorageBlocks(ids, block_bytes, size()); !s.ok()) return s;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (absl::Status s = CopyToHost(static_cast<size_t>(ids[i]) * block_bytes, out[i]); !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

absl::Status KvBlockStorage::CopyBlocksFromHost(absl::Span<const int32_t> ids, size_t block_bytes,
                                                absl::Span<const absl::Span<const uint8_t>> in) {
  if (absl::Status s = CheckStorageBlocks(ids, block_bytes, size()); !s.ok()) return s;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (absl::Status s = CopyFromHost(static_cast<size_t>(ids[i]) * block_bytes, in[i]);
        !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

std::unique_ptr<KvBlockStorage> MakeHostKvStorage(size_t bytes) {
  return std::make_unique<HostKvStorage>(bytes);
}

absl::Status CheckStorageRange(size_t offset, size_t bytes, size_t size) {
  if (offset > size || bytes > size - offset) {
    return absl::OutOfRangeError(absl::StrCat("KV storage: bytes [", offset, ", +", bytes,
                                              ") are outside its ", size, " bytes"));
  }
  return absl::OkStatus();
}

absl::Status CheckStorageBlocks(absl::Span<const int32_t> ids, size_t block_bytes, size_t size) {
  for (const int32_t id : ids) {
    if (id < 0 || block_bytes == 0 || static_cast<size_t>(id) >= size / block_bytes) {
      return absl::OutOfRangeError(absl::StrCat("KV storage: block ", id, " of ", block_bytes,
                                                " bytes is outside its ", size, " bytes"));
    }
  }
  return absl::OkStatus();
}

}  // namespace pdserve::kv
