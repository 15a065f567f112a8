#include "common/kv_transfer/grpc/handoff_proto.h"

#include "absl/strings/str_cat.h"
#include "common/rpc/proto_convert.h"

namespace pdserve::kv_transfer {
namespace {

int32_t Milliseconds(absl::Duration d) {
  return static_cast<int32_t>(std::min<int64_t>(absl::ToInt64Milliseconds(d), INT32_MAX));
}

}  // namespace

v1::KvHandoff HandoffToProto(const Handoff& handoff) {
  v1::KvHandoff proto;
  proto.set_transfer_token(handoff.transfer_token);
  proto.mutable_block_ids()->Add(handoff.target_blocks.begin(), handoff.target_blocks.end());
  *proto.mutable_layout() = rpc::KvLayoutToProto(handoff.layout);
  proto.mutable_layout()->set_model_fingerprint(handoff.model_fingerprint);
  for (const TransportOffer& offer : handoff.offers) {
    v1::KvTransportOffer* out = proto.add_transports();
    out->set_transport(offer.transport);
    out->set_endpoint(offer.endpoint);
    out->set_host_id(offer.host_id);
  }
  proto.set_lease_idle_ms(Milliseconds(handoff.lease_idle));
  proto.set_lease_max_ms(Milliseconds(handoff.lease_max));
  if (handoff.lease_expiry != absl::InfiniteFuture()) {
    proto.set_lease_expiry_unix_ms(absl::ToUnixMillis(handoff.lease_expiry));
  }
  return proto;
}

absl::StatusOr<Handoff> HandoffFromProto(const v1::KvHandoff& proto) {
  Handoff handoff;
  if (!proto.has_layout()) return absl::InvalidArgumentError("the KV handoff has no layout");
  absl::StatusOr<kv::KvLayout> layout = rpc::KvLayoutFromProto(proto.layout());
  if (!layout.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("the KV handoff's layout: ", layout.status().message()));
  }
  handoff.layout = *layout;
  handoff.model_fingerprint = proto.layout().model_fingerprint();
  handoff.transfer_token = proto.transfer_token();
  handoff.target_blocks.assign(proto.block_ids().begin(), proto.block_ids().end());
  for (const v1::KvTransportOffer& offer : proto.transports()) {
    handoff.offers.push_back({offer.transport(), offer.endpoint(), offer.host_id()});
  }
  handoff.lease_idle = absl::Milliseconds(proto.lease_idle_ms());
  handoff.lease_max = absl::Milliseconds(proto.lease_max_ms());
  if (proto.lease_expiry_unix_ms() > 0) {
    handoff.lease_expiry = absl::FromUnixMillis(proto.lease_expiry_unix_ms());
  }
  return handoff;
}

void SetHello(const SenderHello& hello, v1::KvChunk& first_chunk) {
  first_chunk.set_request_id(hello.request_id);
  first_chunk.set_transfer_token(hello.transfer_token);
  first_chunk.set_transport(hello.transport);
  *first_chunk.mutable_layout() = rpc::KvLayoutToProto(hello.layout);
  first_chunk.mutable_layout()->set_model_fingerprint(hello.model_fingerprint);
  first_chunk.set_n_prompt_tokens(static_cast<int32_t>(hello.n_prompt_tokens));
}

absl::StatusOr<SenderHello> HelloFromChunk(const v1::KvChunk& first_chunk) {
  SenderHello hello;
  hello.request_id = first_chunk.request_id();
  hello.transfer_token = first_chunk.transfer_token();
  if (hello.transfer_token.empty()) {
    return absl::PermissionDeniedError(absl::StrCat(
        "the first KV chunk (request '", hello.request_id,
        "') carries no transfer token: KV is accepted only with the reservation's token"));
  }
  hello.transport = first_chunk.transport().empty() ? std::string(kGrpcTransport)
                                                    : first_chunk.transport();
  if (!first_chunk.has_layout()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "request '", hello.request_id, "': the first KV chunk carries no layout"));
  }
  absl::StatusOr<kv::KvLayout> layout = rpc::KvLayoutFromProto(first_chunk.layout());
  if (!layout.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "request '", hello.request_id, "': bad KV layout: ", layout.status().message()));
  }
  hello.layout = *layout;
  hello.model_fingerprint = first_chunk.layout().model_fingerprint();
  hello.n_prompt_tokens = first_chunk.n_prompt_tokens();
  return hello;
}

v1::KvTransferReport TransferReportToProto(const TransferReport& report) {
  v1::KvTransferReport proto;
  proto.set_transport(report.transport);
  proto.set_bytes(report.bytes);
  proto.set_seconds(report.seconds);
  return proto;
}

}  // namespace pdserve::kv_transfer
