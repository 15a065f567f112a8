#pragma once
// The sender side of a transport (docs/kv-transfer.md): one KvSendStream moves one sequence's
// blocks to the decode worker that reserved them. A transport is a KvSendTransport that opens
// such streams; KvSendTransports (send_transports.h) picks one per handoff. The blocks' keys and
// checksums are made above this interface (handoff_sender.h); a transport only moves headers
// and bytes and reports the receiver's verdict.
//
// Every transport keeps the KvReceiver.PushKv control stream (proto/kv_transfer.proto) open for
// the whole handoff: it presents the transfer token first, carries the first token last, and its
// response is decode's acknowledgement. Bytes go over it ("grpc"), into the decode pool's shared
// memory ("shm") or over a TCP connection ("tcp").

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "common/kv_transfer/handoff.h"
#include "common/kv_transfer/kv_blocks.h"

namespace pdserve::kv_transfer {

// What the control stream's first message says about the sequence.
struct SenderHello {
  std::string request_id;
  std::string transfer_token;
  std::string transport;  // the transport moving the bytes
  kv::KvLayout layout;    // the sender's layout
  std::string model_fingerprint;
  int64_t n_prompt_tokens = 0;
};

class KvSendStream {
 public:
  virtual ~KvSendStream() = default;
  virtual absl::string_view transport() const = 0;
  // True for a transport that copies the block bytes itself and fills each header's checksum
  // as it copies (CopyBlockWithChecksum): the sender then leaves header.checksum unset.
  virtual bool computes_checksums() const { return false; }
  // Moves blocks (whole ones, at most a chunk) to their targets. Returns once the transport has
  // taken them: the caller may then reuse the bytes; the receiver may not have verified them
  // yet. An error ends the stream; it is the receiver's status when it has one, with a message
  // naming the decode worker.
  virtual absl::Status SendBlocks(absl::Span<const OutgoingBlock> blocks) = 0;
  // After the last block: sends the first token on the control stream and waits for decode's
  // verdict on the whole sequence (OK = every block verified and committed). Idempotent.
  virtual absl::Status Finish(int32_t first_token) = 0;
  // Abandons the handoff (the receiver fails the reservation and frees its blocks).
  // Thread-safe: may be called while another thread is inside SendBlocks or Finish, which then
  // fail.
  virtual void Cancel() = 0;
};

class KvSendTransport {
 public:
  virtual ~KvSendTransport() = default;
  virtual absl::string_view name() const = 0;
  // Whether this side can use `offer` at all (shm: the same boot id and the object opens).
  virtual bool CanUse(const TransportOffer& offer) = 0;
  // Opens the control stream (sending `hello`) and the data path to `offer`. Gives up at
  // `deadline`. Connection errors may surface here or from the first SendBlocks.
  virtual absl::StatusOr<std::unique_ptr<KvSendStream>> Open(const Handoff& handoff,
                                                             const TransportOffer& offer,
                                                             const SenderHello& hello,
                                                             absl::Time deadline) = 0;
};

// What the prefill worker opens streams with (send_transports.h in production, fakes in tests).
class KvSendStreamFactory {
 public:
  virtual ~KvSendStreamFactory() = default;
  // A stream for `handoff` over the transport the policy picks. Never null when OK.
  virtual absl::StatusOr<std::unique_ptr<KvSendStream>> Open(const Handoff& handoff,
                                                             const SenderHello& hello,
                                                             absl::Time deadline) = 0;
};

}  // namespace pdserve::kv_transfer
