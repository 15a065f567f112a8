#include "common/kv_transfer/tcp/tcp_send_transport.h"

#include <sys/socket.h>
#include <sys/uio.h>

#include <algorithm>
#include <atomic>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/kv_transfer/tcp/tcp_frame.h"
#include "common/kv_transfer/tcp/tcp_socket.h"
#include "common/kv_transfer/transfer_token.h"

namespace pdserve::kv_transfer {
namespace {

// How long a failed write waits for the ack that explains it (a receiver that refused a batch
// answers, then closes): the sender's error is then the receiver's reason, not "broken pipe".
constexpr absl::Duration kRefusalGrace = absl::Seconds(1);

// Not thread-safe, except Cancel. The socket stays open (shut, once done) until destruction, so
// that Cancel never touches a closed descriptor.
class TcpKvSendStream final : public KvSendStream {
 public:
  TcpKvSendStream(Fd socket, std::string peer, std::string token, size_t block_bytes,
                  std::unique_ptr<KvControlStream> control, absl::Time deadline)
      : socket_(std::move(socket)),
        peer_(std::move(peer)),
        token_(std::move(token)),
        block_bytes_(block_bytes),
        control_(std::move(control)),
        deadline_(deadline) {}

  absl::string_view transport() const override { return kTcpTransport; }
  absl::Status SendBlocks(absl::Span<const OutgoingBlock> blocks) override;
  absl::Status Finish(int32_t first_token) override;
  void Cancel() override {
    cancelled_.store(true);
    shutdown(socket_.get(), SHUT_RDWR);
    control_->Cancel();
  }

 private:
  // One batch of at most kMaxFrameBlocks.
  absl::Status SendBatch(absl::Span<const OutgoingBlock> blocks);
  // The next ack: the receiver's verdict on its batch (outer status: the connection's error).
  absl::StatusOr<absl::Status> ReadAck(const IoLimits& limits);
  // Reads the acks that already arrived (every outstanding one when `wait`): the first refusal,
  // or the connection's error, ends the stream.
  absl::Status CollectAcks(bool wait);
  // Ends the stream with `error` (once): shuts the socket, cancels the control stream.
  absl::Status End(absl::Status error);
  absl::Status ConnectionError(const absl::Status& error) const;

  Fd socket_;
  const std::string peer_;  // "decode worker at <control address> (tcp <host:port>)"
  const std::string token_;
  const size_t block_bytes_;
  const std::unique_ptr<KvControlStream> control_;
  const absl::Time deadline_;
  std::atomic<bool> cancelled_{false};
  int64_t acks_pending_ = 0;
  absl::Status ended_;  // non-OK once the stream has failed
  bool finished_ = false;
  absl::Status finish_status_;
};

absl::Status TcpKvSendStream::ConnectionError(const absl::Status& error) const {
  if (cancelled_.load()) {
    return absl::CancelledError(absl::StrCat("KV handoff to ", peer_, " was cancelled"));
  }
  return absl::Status(error.code(), absl::StrCat(peer_, ": KV connection: ", error.message()));
}

absl::Status TcpKvSendStream::End(absl::Status error) {
  if (ended_.ok()) {
    ended_ = std::move(error);
    shutdown(socket_.get(), SHUT_RDWR);
    control_->Cancel();
  }
  return ended_;
}

absl::StatusOr<absl::Status> TcpKvSendStream::ReadAck(const IoLimits& limits) {
  uint8_t prefix_bytes[kAckPrefixBytes];
  if (absl::Status s = ReadAll(socket_.get(), absl::MakeSpan(prefix_bytes), limits); !s.ok()) {
    return ConnectionError(s);
  }
  absl::StatusOr<AckPrefix> prefix = DecodeAckPrefix(prefix_bytes);
  if (!prefix.ok()) return ConnectionError(prefix.status());
  std::string message(prefix->message_bytes, '\0');
  if (absl::Status s = ReadAll(
          socket_.get(),
          absl::MakeSpan(reinterpret_cast<uint8_t*>(message.data()), message.size()), limits);
      !s.ok()) {
    return ConnectionError(s);
  }
  --acks_pending_;
  if (prefix->code == absl::StatusCode::kOk) return absl::OkStatus();
  return absl::Status(prefix->code, absl::StrCat(peer_, " refused KV: ", message));
}

absl::Status TcpKvSendStream::CollectAcks(bool wait) {
  const IoLimits limits{.deadline = deadline_};
  while (acks_pending_ > 0 && (wait || ReadableNow(socket_.get()))) {
    absl::StatusOr<absl::Status> verdict = ReadAck(limits);
    if (!verdict.ok()) return End(verdict.status());
    if (!verdict->ok()) return End(*verdict);
  }
  return absl::OkStatus();
}

absl::Status TcpKvSendStream::SendBlocks(absl::Span<const OutgoingBlock> blocks) {
  if (!ended_.ok()) return ended_;
  if (cancelled_.load()) return End(ConnectionError(absl::OkStatus()));
  if (absl::Status s = CollectAcks(/*wait=*/false); !s.ok()) return s;
  while (!blocks.empty()) {
    const size_t n = std::min<size_t>(blocks.size(), kMaxFrameBlocks);
    if (absl::Status s = SendBatch(blocks.subspan(0, n)); !s.ok()) return s;
    blocks.remove_prefix(n);
  }
  return absl::OkStatus();
}

absl::Status TcpKvSendStream::SendBatch(absl::Span<const OutgoingBlock> blocks) {
  std::vector<KvBlockHeader> headers;
  headers.reserve(blocks.size());
  for (const OutgoingBlock& block : blocks) {
    if (block.bytes.size() != block_bytes_) {
      return End(absl::InternalError(
          absl::StrCat("KV block ", block.header.index, " for ", peer_, " has ",
                       block.bytes.size(), " bytes, the layout needs ", block_bytes_)));
    }
    headers.push_back(block.header);
  }
  const std::string header = EncodeFrameHeader(token_, block_bytes_, headers);
  // The header, then every block straight from the caller's bytes.
  std::vector<iovec> iov;
  iov.reserve(blocks.size() + 1);
  iov.push_back({const_cast<char*>(header.data()), header.size()});
  for (const OutgoingBlock& block : blocks) {
    iov.push_back({const_cast<uint8_t*>(block.bytes.data()), block.bytes.size()});
  }
  const absl::Status written =
      WriteAll(socket_.get(), absl::MakeSpan(iov), IoLimits{.deadline = deadline_});
  if (!written.ok()) {
    // A receiver that refused an earlier batch has answered before closing: prefer its reason.
    if (!cancelled_.load()) {
      const IoLimits grace{.deadline = std::min(deadline_, absl::Now() + kRefusalGrace)};
      while (acks_pending_ > 0) {
        absl::StatusOr<absl::Status> verdict = ReadAck(grace);
        if (!verdict.ok()) break;
        if (!verdict->ok()) return End(*verdict);
      }
    }
    return End(ConnectionError(written));
  }
  ++acks_pending_;
  return absl::OkStatus();
}

absl::Status TcpKvSendStream::Finish(int32_t first_token) {
  if (finished_) return finish_status_;
  if (!ended_.ok()) return ended_;
  if (cancelled_.load()) return End(ConnectionError(absl::OkStatus()));
  if (absl::Status s = CollectAcks(/*wait=*/true); !s.ok()) return s;
  finish_status_ = control_->Finish(first_token);
  finished_ = true;
  // Only now: the receiver fails a handoff whose connection ends before decode acknowledged it.
  shutdown(socket_.get(), SHUT_RDWR);
  return finish_status_;
}

}  // namespace

bool TcpKvSendTransport::CanUse(const TransportOffer& offer) {
  return IsTcpEndpoint(offer.endpoint);
}

absl::StatusOr<std::unique_ptr<KvSendStream>> TcpKvSendTransport::Open(
    const Handoff& handoff, const TransportOffer& offer, const SenderHello& hello,
    absl::Time deadline) {
  if (handoff.transfer_token.size() != kTransferTokenBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "request ", handoff.request_id, ": KV handoff carries a transfer token of ",
        handoff.transfer_token.size(), " bytes, expected ", kTransferTokenBytes));
  }
  absl::StatusOr<HostPort> endpoint = ParseTcpEndpoint(offer.endpoint, handoff.control_address);
  if (!endpoint.ok()) return endpoint.status();
  const std::string peer = absl::StrCat("decode worker at ", handoff.control_address, " (tcp ",
                                        JoinHostPort(*endpoint), ")");
  absl::StatusOr<Fd> socket = ConnectTcp(*endpoint, IoLimits{.deadline = deadline});
  if (!socket.ok()) {
    return absl::Status(socket.status().code(),
                        absl::StrCat(peer, ": ", socket.status().message()));
  }
  SenderHello tcp_hello = hello;
  tcp_hello.transport = std::string(kTcpTransport);
  auto control = std::make_unique<KvControlStream>(channels_.Get(handoff.control_address),
                                                   handoff.control_address,
                                                   std::move(tcp_hello), deadline);
  // The hello goes now, so that decode checks it (and notices a sender that dies) before any
  // block arrives.
  v1::KvChunk hello_chunk;
  if (absl::Status s = control->Send(hello_chunk); !s.ok()) return s;
  return std::make_unique<TcpKvSendStream>(*std::move(socket), peer, handoff.transfer_token,
                                           handoff.layout.BlockBytes(), std::move(control),
                                           deadline);
}

}  // namespace pdserve::kv_transfer
