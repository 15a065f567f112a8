#pragma once
// The "grpc" transport: block bytes travel inside the control stream's chunks (KvBlock.data).
// Portable (any two hosts that reach each other's gRPC port) and the fallback of "auto"; costs
// a serialization and copies per byte that shm and tcp avoid.

#include <memory>

#include "common/kv_transfer/grpc/control_stream.h"
#include "common/kv_transfer/kv_send_stream.h"

namespace pdserve::kv_transfer {

class GrpcKvSendTransport final : public KvSendTransport {
 public:
  // `channels` outlives the transport.
  explicit GrpcKvSendTransport(rpc::ChannelCache& channels) : channels_(channels) {}

  absl::string_view name() const override { return kGrpcTransport; }
  bool CanUse(const TransportOffer& offer) override { return true; }
  absl::StatusOr<std::unique_ptr<KvSendStream>> Open(const Handoff& handoff,
                                                     const TransportOffer& offer,
                                                     const SenderHello& hello,
                                                     absl::Time deadline) override;

 private:
  rpc::ChannelCache& channels_;
};

// The chunk that carries `blocks` on the control stream: headers and keys, and the bytes too
// when `with_bytes` (grpc); without them for a transport that has already moved them (shm).
v1::KvChunk BlocksChunk(absl::Span<const OutgoingBlock> blocks, bool with_bytes);

}  // namespace pdserve::kv_transfer
