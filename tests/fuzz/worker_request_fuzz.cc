// What a worker runs on the router's messages before any model math. The first byte picks the
// message (even: PrefillRequest, odd: DecodeRequest), the rest is its wire bytes. A prefill
// worker converts the handoff (HandoffFromProto) and checks it against its pool
// (CheckHandoff); both workers check the sequence (request::CheckSequenceRequest) and the
// client's request id. The handoff's wire form must also survive a round trip unchanged.
#include <string>
#include <vector>

#include "common/kv_transfer/grpc/handoff_proto.h"
#include "common/kv_transfer/handoff.h"
#include "common/request/request_contract.h"
#include "common/rpc/proto_convert.h"
#include "google/protobuf/stubs/logging.h"
#include "tests/fuzz/fuzz_input.h"
#include "tests/fuzz/fuzz_targets.h"
#include "worker.pb.h"

namespace pdserve::fuzz {
namespace {

void CheckRoundTrip(const kv_transfer::Handoff& h) {
  absl::StatusOr<kv_transfer::Handoff> back =
      kv_transfer::HandoffFromProto(kv_transfer::HandoffToProto(h));
  PDSERVE_FUZZ_CHECK(back.ok(), "a converted handoff does not convert back: " +
                                    back.status().ToString());
  bool same_offers = back->offers.size() == h.offers.size();
  for (size_t i = 0; same_offers && i < h.offers.size(); ++i) {
    same_offers = back->offers[i].transport == h.offers[i].transport &&
                  back->offers[i].endpoint == h.offers[i].endpoint &&
                  back->offers[i].host_id == h.offers[i].host_id;
  }
  PDSERVE_FUZZ_CHECK(back->transfer_token == h.transfer_token &&
                         back->target_blocks == h.target_blocks && back->layout == h.layout &&
                         back->model_fingerprint == h.model_fingerprint && same_offers &&
                         back->lease_idle == h.lease_idle && back->lease_max == h.lease_max &&
                         back->lease_expiry == h.lease_expiry,
                     "the KV handoff changed in a wire round trip");
}

void Prefill(absl::string_view wire) {
  v1::PrefillRequest request;
  if (!request.ParseFromArray(wire.data(), static_cast<int>(wire.size()))) return;
  (void)request::CheckClientRequestId(request.request_id());
  const sampling::SamplingParams sampling = rpc::SamplingFromProto(request.sampling());
  const std::vector<int32_t> prompt(request.prompt_ids().begin(), request.prompt_ids().end());
  // A prefill worker makes one token.
  (void)request::CheckSequenceRequest({request.request_id(), prompt, 1, &sampling}, kFuzzLimits);
  if (!request.has_handoff()) return;
  absl::StatusOr<kv_transfer::Handoff> handoff = kv_transfer::HandoffFromProto(request.handoff());
  if (!handoff.ok()) {
    PDSERVE_FUZZ_CHECK(absl::IsInvalidArgument(handoff.status()), handoff.status().ToString());
    return;
  }
  handoff->request_id = request.request_id();
  handoff->control_address = request.decode_address();
  CheckRoundTrip(*handoff);
  (void)kv_transfer::HostOf(handoff->control_address);
  const absl::Status checked = kv_transfer::CheckHandoff(
      *handoff, FuzzLayout(), kFuzzFingerprint, static_cast<int64_t>(prompt.size()));
  if (checked.ok()) {
    // What the sender relies on from here: one target block per prompt block.
    const int64_t n_blocks =
        (static_cast<int64_t>(prompt.size()) + FuzzLayout().block_size - 1) /
        FuzzLayout().block_size;
    PDSERVE_FUZZ_CHECK(static_cast<int64_t>(handoff->target_blocks.size()) == n_blocks,
                       "CheckHandoff accepted a wrong number of target blocks");
  }
}

void Decode(absl::string_view wire) {
  v1::DecodeRequest request;
  if (!request.ParseFromArray(wire.data(), static_cast<int>(wire.size()))) return;
  (void)request::CheckClientRequestId(request.request_id());
  const sampling::SamplingParams sampling = rpc::SamplingFromProto(request.sampling());
  const std::vector<int32_t> prompt(request.prompt_ids().begin(), request.prompt_ids().end());
  const absl::Status checked = request::CheckSequenceRequest(
      {request.request_id(), prompt, request.max_tokens(), &sampling}, kFuzzLimits);
  if (checked.ok()) {
    // What the decode scheduler relies on: the sequence fits the context.
    PDSERVE_FUZZ_CHECK(static_cast<int64_t>(prompt.size()) + request.max_tokens() <=
                           kFuzzLimits.context_length,
                       "CheckSequenceRequest accepted a sequence past the context");
  }
}

}  // namespace

bool InitWorkerRequestFuzz() {
  // Protobuf logs every string field with invalid UTF-8 it refuses: noise here.
  google::protobuf::SetLogHandler(nullptr);
  return true;
}

int WorkerRequestFuzz(const uint8_t* data, size_t size) {
  FuzzInput input(data, size);
  const bool decode = (input.TakeByte() & 1) != 0;
  const absl::string_view wire = input.TakeRest();
  decode ? Decode(wire) : Prefill(wire);
  return 0;
}

}  // namespace pdserve::fuzz

PDSERVE_FUZZ_TARGET(pdserve::fuzz::InitWorkerRequestFuzz, pdserve::fuzz::WorkerRequestFuzz)
