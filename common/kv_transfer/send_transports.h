#pragma once
// The prefill worker's transports and the rule that picks one per handoff
// (docs/kv-transfer.md): under "auto", the first transport of the order shm > tcp > grpc that
// the decode worker offers and this side can use; under a forced mode, that transport or a
// FailedPrecondition naming what decode offered.

#include <memory>
#include <vector>

#include "common/kv_transfer/handoff.h"
#include "common/kv_transfer/kv_send_stream.h"

namespace pdserve::kv_transfer {

class KvSendTransports final : public KvSendStreamFactory {
 public:
  explicit KvSendTransports(TransportMode mode) : mode_(mode) {}

  // Makes `transport` available (the order of calls does not matter).
  void Add(std::unique_ptr<KvSendTransport> transport);

  absl::StatusOr<std::unique_ptr<KvSendStream>> Open(const Handoff& handoff,
                                                     const SenderHello& hello,
                                                     absl::Time deadline) override;

  // The offer and transport Open would use, without opening anything.
  absl::StatusOr<std::pair<TransportOffer, KvSendTransport*>> Choose(const Handoff& handoff);

 private:
  const TransportMode mode_;
  std::vector<std::unique_ptr<KvSendTransport>> transports_;
};

}  // namespace pdserve::kv_transfer
