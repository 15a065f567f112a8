#pragma once
// The "tcp" transport's sender (docs/kv-transfer.md): for hosts that do not share memory, block
// bytes go over a plain TCP connection to the decode worker's TcpKvReceiver, in batches framed
// as tcp_frame.h says, written with one gathering sendmsg straight from the pool's bytes (no
// copy). The control stream (control_stream.h) carries the hello when the stream opens and the
// first token at Finish; acks of batches are read lazily, so sending never waits for the
// receiver's verification of the previous batch.
//
// One connection per handoff, shut only after decode's verdict (the receiver takes an earlier
// end for an abandoned handoff); every wait on the socket is bounded by the handoff's deadline.

#include <memory>

#include "common/kv_transfer/grpc/control_stream.h"
#include "common/kv_transfer/kv_send_stream.h"

namespace pdserve::kv_transfer {

class TcpKvSendTransport final : public KvSendTransport {
 public:
  // `channels` outlives the transport. Thread-safe: streams are independent.
  explicit TcpKvSendTransport(rpc::ChannelCache& channels) : channels_(channels) {}

  absl::string_view name() const override { return kTcpTransport; }
  // Whether the offer's endpoint is "host:port" or ":port" (the host of the handoff's control
  // address); nothing is resolved.
  bool CanUse(const TransportOffer& offer) override;
  // Connects to the endpoint (non-blocking, until `deadline`; TCP_NODELAY), then opens the
  // control stream and sends `hello` on it. InvalidArgument for a malformed endpoint or token,
  // Unavailable / DeadlineExceeded naming the decode worker when it cannot be reached.
  //
  // The stream's SendBlocks returns once the batch's bytes are in the socket (the caller may
  // reuse them); a refusal of an earlier batch surfaces from a later SendBlocks or from Finish,
  // with the receiver's code and message. Finish waits for every batch's ack, then delivers the
  // first token and waits for decode's verdict. Cancel shuts the socket and cancels the control
  // stream; it is thread-safe.
  absl::StatusOr<std::unique_ptr<KvSendStream>> Open(const Handoff& handoff,
                                                     const TransportOffer& offer,
                                                     const SenderHello& hello,
                                                     absl::Time deadline) override;

 private:
  rpc::ChannelCache& channels_;
};

}  // namespace pdserve::kv_transfer
