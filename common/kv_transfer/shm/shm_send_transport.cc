#include "common/kv_transfer/shm/shm_send_transport.h"

#include <cstring>
#include <vector>

#include "absl/time/clock.h"

#include "absl/strings/str_cat.h"
#include "common/kv_transfer/grpc/grpc_transport.h"

namespace pdserve::kv_transfer {
namespace {

constexpr size_t kMaxRegions = 16;

// Writes into another process's pool are the one thing a sender can do wrong after the fact:
// none happens once Cancel has returned, none after the reservation's lease (minus a margin for
// the copy itself), and the decode worker quarantines the blocks of reservations that end
// early (docs/kv-transfer.md).
class ShmKvSendStream final : public KvSendStream {
 public:
  ShmKvSendStream(std::shared_ptr<SharedMemoryRegion> region, absl::Time write_deadline,
                  std::string request_id, std::unique_ptr<KvControlStream> control)
      : region_(std::move(region)),
        write_deadline_(write_deadline),
        request_id_(std::move(request_id)),
        control_(std::move(control)) {}

  absl::string_view transport() const override { return kShmTransport; }
  bool computes_checksums() const override { return true; }

  absl::Status SendBlocks(absl::Span<const OutgoingBlock> blocks) override {
    std::vector<OutgoingBlock> copied(blocks.begin(), blocks.end());
    {
      absl::MutexLock lock(&write_mu_);
      if (cancelled_) return absl::CancelledError("the KV handoff was cancelled");
      if (absl::Now() >= write_deadline_) {
        return absl::AbortedError(absl::StrCat(
            "request ", request_id_, ": the decode worker's reservation has run out of lease"));
      }
      for (OutgoingBlock& block : copied) {
        // Open checked every target against the object's size.
        const absl::Span<uint8_t> target(
            region_->data() + static_cast<size_t>(block.target) * block.bytes.size(),
            block.bytes.size());
        block.header.checksum = CopyBlockWithChecksum(target, block.bytes);
      }
    }
    // Sent after the copies: decode reads the blocks only once their headers arrive.
    v1::KvChunk chunk = BlocksChunk(copied, /*with_bytes=*/false);
    return control_->Send(chunk);
  }
  absl::Status Finish(int32_t first_token) override { return control_->Finish(first_token); }
  void Cancel() override {
    {
      // Waits for a copy in progress: after this no byte lands in the decode pool.
      absl::MutexLock lock(&write_mu_);
      cancelled_ = true;
    }
    control_->Cancel();
  }

 private:
  const std::shared_ptr<SharedMemoryRegion> region_;
  const absl::Time write_deadline_;
  const std::string request_id_;
  const std::unique_ptr<KvControlStream> control_;
  absl::Mutex write_mu_;
  bool cancelled_ ABSL_GUARDED_BY(write_mu_) = false;
};

// A copy started before this margin ends well before the lease does.
constexpr absl::Duration kWriteMargin = absl::Seconds(1);

}  // namespace

ShmKvSendTransport::ShmKvSendTransport(rpc::ChannelCache& channels) : channels_(channels) {
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
  const absl::Time write_deadline = handoff.lease_expiry == absl::InfiniteFuture()
                                       ? absl::InfiniteFuture()
                                       : handoff.lease_expiry - kWriteMargin;
  return std::make_unique<ShmKvSendStream>(
      *std::move(region), write_deadline, handoff.request_id,
      std::make_unique<KvControlStream>(channels_.Get(handoff.control_address),
                                        handoff.control_address, hello, deadline));
}

}  // namespace pdserve::kv_transfer
