#include "common/kv_transfer/grpc/grpc_transport.h"

namespace pdserve::kv_transfer {
namespace {

class GrpcKvSendStream final : public KvSendStream {
 public:
  explicit GrpcKvSendStream(std::unique_ptr<KvControlStream> control)
      : control_(std::move(control)) {}

  absl::string_view transport() const override { return kGrpcTransport; }
  absl::Status SendBlocks(absl::Span<const OutgoingBlock> blocks) override {
    v1::KvChunk chunk = BlocksChunk(blocks, /*with_bytes=*/true);
    return control_->Send(chunk);
  }
  absl::Status Finish(int32_t first_token) override { return control_->Finish(first_token); }
  void Cancel() override { control_->Cancel(); }

 private:
  std::unique_ptr<KvControlStream> control_;
};

}  // namespace

v1::KvChunk BlocksChunk(absl::Span<const OutgoingBlock> blocks, bool with_bytes) {
  v1::KvChunk chunk;
  for (const OutgoingBlock& block : blocks) {
    v1::KvBlock* out = chunk.add_blocks();
    out->set_index(static_cast<int32_t>(block.header.index));
    out->set_n_tokens(static_cast<int32_t>(block.header.n_tokens));
    if (block.has_key) out->set_key(BlockKeyBytes(block.key));
    if (with_bytes) out->set_data(block.bytes.data(), block.bytes.size());
    out->set_checksum(block.header.checksum);
  }
  return chunk;
}

absl::StatusOr<std::unique_ptr<KvSendStream>> GrpcKvSendTransport::Open(
    const Handoff& handoff, const TransportOffer& offer, const SenderHello& hello,
    absl::Time deadline) {
  return std::make_unique<GrpcKvSendStream>(std::make_unique<KvControlStream>(
      channels_.Get(handoff.control_address), handoff.control_address, hello, deadline));
}

}  // namespace pdserve::kv_transfer
