#include "common/kv_transfer/send_transports.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace pdserve::kv_transfer {

void KvSendTransports::Add(std::unique_ptr<KvSendTransport> transport) {
  transports_.push_back(std::move(transport));
}

absl::StatusOr<std::pair<TransportOffer, KvSendTransport*>> KvSendTransports::Choose(
    const Handoff& handoff) {
  // Fastest first; a later issue puts the GPU transports before these.
  for (absl::string_view name : {kShmTransport, kTcpTransport, kGrpcTransport}) {
    if (!ModeAllows(mode_, name)) continue;
    KvSendTransport* transport = nullptr;
    for (const auto& t : transports_) {
      if (t->name() == name) transport = t.get();
    }
    if (transport == nullptr) continue;
    for (const TransportOffer& offer : handoff.offers) {
      if (offer.transport == name && transport->CanUse(offer)) {
        return std::make_pair(offer, transport);
      }
    }
  }
  std::vector<std::string> offered;
  for (const TransportOffer& offer : handoff.offers) offered.push_back(offer.transport);
  return absl::FailedPreconditionError(absl::StrCat(
      "request ", handoff.request_id, ": no KV transport in common with the decode worker at ",
      handoff.control_address, " (it offers [", absl::StrJoin(offered, ", "),
      "]; this worker uses ", TransportModeName(mode_), ")"));
}

absl::StatusOr<std::unique_ptr<KvSendStream>> KvSendTransports::Open(const Handoff& handoff,
                                                                     const SenderHello& hello,
                                                                     absl::Time deadline) {
  absl::StatusOr<std::pair<TransportOffer, KvSendTransport*>> chosen = Choose(handoff);
  if (!chosen.ok()) return chosen.status();
  SenderHello with_transport = hello;
  with_transport.transport = std::string(chosen->second->name());
  return chosen->second->Open(handoff, chosen->first, with_transport, deadline);
}

}  // namespace pdserve::kv_transfer
