#include "common/kv_transfer/shm/shm_send_transport.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/kv_transfer/grpc/grpc_transport.h"

namespace pdserve::kv_transfer {
namespace {

constexpr size_t kMaxRegions = 16;

class ShmKvSendStream final : public KvSendStream {
 public:
  ShmKvSendStream(std::shared_ptr<SharedMemoryRegion> region,
                  std::unique_ptr<KvControlStream> control)
      : region_(std::move(region)), control_(std::move(control)) {}

  absl::string_view transport() const override { return kShmTransport; }

  absl::Status SendBlocks(absl::Span<const OutgoingBlock> blocks) override {
    for (const OutgoingBlock& block : blocks) {
      // Open checked every target against the object's size.
      std::memcpy(region_->data() + static_cast<size_t>(block.target) * block.bytes.size(),
                  block.bytes.data(), block.bytes.size());
    }
    // Sent after the copies: decode reads the blocks only once their headers arrive.
    v1::KvChunk chunk = BlocksChunk(blocks, /*with_bytes=*/false);
    return control_->Send(chunk);
  }
  absl::Status Finish(int32_t first_token) override { return control_->Finish(first_token); }
  void Cancel() override { control_->Cancel(); }

 private:
  std::shared_ptr<SharedMemoryRegion> region_;
  std::unique_ptr<KvControlStream> control_;
};

}  // namespace

ShmKvSendTransport::ShmKvSendTransport(KvChannels& channels) : channels_(channels) {
  absl::StatusOr<std::string> boot_id = HostBootId();
  if (boot_id.ok()) boot_id_ = *boot_id;
}

absl::StatusOr<std::shared_ptr<SharedMemoryRegion>> ShmKvSendTransport::Region(
    const std::string& name) {
  absl::MutexLock lock(&mu_);
  auto it = regions_.find(name);
  if (it != regions_.end()) return it->second;
  absl::StatusOr<SharedMemoryRegion> region = SharedMemoryRegion::Open(name);
  if (!region.ok()) return region.status();
  if (regions_.size() >= kMaxRegions) regions_.clear();  // streams hold their own references
  auto shared = std::make_shared<SharedMemoryRegion>(*std::move(region));
  regions_.emplace(name, shared);
  return shared;
}

bool ShmKvSendTransport::CanUse(const TransportOffer& offer) {
  if (boot_id_.empty() || offer.host_id != boot_id_) return false;
  return Region(offer.endpoint).ok();
}

absl::StatusOr<std::unique_ptr<KvSendStream>> ShmKvSendTransport::Open(
    const Handoff& handoff, const TransportOffer& offer, const SenderHello& hello,
    absl::Time deadline) {
  absl::StatusOr<std::shared_ptr<SharedMemoryRegion>> region = Region(offer.endpoint);
  if (!region.ok()) return region.status();
  const size_t block_bytes = handoff.layout.BlockBytes();
  const size_t n_blocks = (*region)->size() / block_bytes;
  for (kv::BlockId target : handoff.target_blocks) {
    if (target < 0 || static_cast<size_t>(target) >= n_blocks) {
      return absl::InvalidArgumentError(absl::StrCat(
          "request ", handoff.request_id, ": KV handoff names block ", target,
          " outside the decode pool's shared memory ", offer.endpoint, " (", n_blocks,
          " blocks)"));
    }
  }
  return std::make_unique<ShmKvSendStream>(
      *std::move(region),
      std::make_unique<KvControlStream>(channels_.For(handoff.control_address),
                                        handoff.control_address, hello, deadline));
}

}  // namespace pdserve::kv_transfer
