#pragma once
// The "shm" transport's sender: a prefill worker on the decode worker's host maps the decode
// pool's shared-memory object (named in the handoff's offer) and copies each block straight
// into its target block, one copy per byte and no serialization; the control stream then
// carries the blocks' headers, and decode verifies each checksum in place before it commits the
// block (docs/kv-transfer.md states the trust model).

#include <map>
#include <memory>
#include <string>

#include "absl/synchronization/mutex.h"
#include "common/kv_transfer/grpc/control_stream.h"
#include "common/kv_transfer/kv_send_stream.h"
#include "common/kv_transfer/shm/shared_memory_region.h"

namespace pdserve::kv_transfer {

class ShmKvSendTransport final : public KvSendTransport {
 public:
  // `channels` outlives the transport. Reads this host's boot id once.
  explicit ShmKvSendTransport(rpc::ChannelCache& channels);

  absl::string_view name() const override { return kShmTransport; }
  // The offer's host id is this host's and its object opens (the mapping is kept for later).
  bool CanUse(const TransportOffer& offer) override;
  // Fails (InvalidArgument) when a target block lies outside the mapped object.
  absl::StatusOr<std::unique_ptr<KvSendStream>> Open(const Handoff& handoff,
                                                     const TransportOffer& offer,
                                                     const SenderHello& hello,
                                                     absl::Time deadline) override;

 private:
  // The mapping of `name`, opening it on first use. Thread-safe.
  absl::StatusOr<std::shared_ptr<SharedMemoryRegion>> Region(const std::string& name);

  rpc::ChannelCache& channels_;
  std::string boot_id_;  // empty when unknown: shm is then never used
  absl::Mutex mu_;
  // Decode pools mapped so far. A restarted decode worker creates a new object; the few stale
  // mappings left are dropped once more than kMaxRegions are held.
  std::map<std::string, std::shared_ptr<SharedMemoryRegion>> regions_ ABSL_GUARDED_BY(mu_);
};

}  // namespace pdserve::kv_transfer
