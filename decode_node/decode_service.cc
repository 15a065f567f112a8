#include "decode_node/decode_service.h"

#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/kv_transfer/grpc/handoff_proto.h"
#include "common/rpc/grpc_status.h"
#include "common/rpc/proto_convert.h"

namespace pdserve::decode {
namespace {

// How often a handler re-checks cancellation and deadlines while it waits.
constexpr absl::Duration kPoll = absl::Milliseconds(20);

// The call's deadline; InfiniteFuture when it has none (gRPC gives a far-future time point).
absl::Time CallDeadline(const grpc::ServerContext& context) {
  const std::chrono::system_clock::time_point deadline = context.deadline();
  if (deadline >= std::chrono::system_clock::now() + std::chrono::hours(24 * 365)) {
    return absl::InfiniteFuture();
  }
  return absl::FromChrono(deadline);
}

// Ends the consumer's hold on a sequence whatever path leaves the handler.
class ScopedRelease {
 public:
  ScopedRelease(DecodeScheduler& scheduler, std::string id)
      : scheduler_(scheduler), id_(std::move(id)) {}
  ~ScopedRelease() { scheduler_.Release(id_); }

 private:
  DecodeScheduler& scheduler_;
  std::string id_;
};

}  // namespace

v1::WorkerLoad WorkerLoadToProto(const SchedulerLoad& load) {
  v1::WorkerLoad out;
  out.set_queue_length(static_cast<int32_t>(load.queue_length));
  out.set_active_sequences(static_cast<int32_t>(load.active_sequences));
  out.set_free_kv_blocks(load.free_kv_blocks);
  out.set_total_kv_blocks(load.total_kv_blocks);
  return out;
}

grpc::Status DecodeWorkerService::Decode(grpc::ServerContext* context,
                                         const v1::DecodeRequest* request,
                                         grpc::ServerWriter<v1::DecodeEvent>* writer) {
  DecodeSpec spec;
  spec.request_id = request->request_id();
  spec.prompt_ids.assign(request->prompt_ids().begin(), request->prompt_ids().end());
  spec.max_tokens = request->max_tokens();
  spec.sampling = rpc::SamplingFromProto(request->sampling());
  spec.ignore_eos = request->ignore_eos();

  const absl::Time deadline = CallDeadline(*context);
  absl::StatusOr<Reservation> reservation =
      scheduler_.Reserve(spec, deadline, [context] { return context->IsCancelled(); });
  if (!reservation.ok()) return rpc::ToGrpcStatus(reservation.status());
  ScopedRelease release(scheduler_, spec.request_id);

  kv_transfer::Handoff handoff;
  handoff.transfer_token = reservation->transfer_token;
  handoff.target_blocks = reservation->prompt_blocks;
  handoff.layout = scheduler_.layout();
  handoff.model_fingerprint = scheduler_.model_fingerprint();
  handoff.offers = options_.kv_offers;
  if (handoff.offers.empty()) {
    handoff.offers.push_back({std::string(kv_transfer::kGrpcTransport), "", ""});
  }
  handoff.lease_idle = scheduler_.options().kv_lease.idle;
  handoff.lease_max = scheduler_.options().kv_lease.max;
  handoff.lease_expiry = reservation->lease_expiry;
  v1::DecodeEvent reserved;
  reserved.mutable_reserved()->set_kv_blocks(static_cast<int32_t>(reservation->n_blocks));
  *reserved.mutable_reserved()->mutable_handoff() = kv_transfer::HandoffToProto(handoff);
  if (!writer->Write(reserved)) {
    return grpc::Status(grpc::StatusCode::CANCELLED, "the client went away");
  }

  std::vector<SequenceEvent> events;
  while (true) {
    events.clear();
    const absl::Time now = absl::Now();
    absl::Status s = scheduler_.WaitEvents(spec.request_id, now + kPoll, &events);
    if (!s.ok()) return rpc::ToGrpcStatus(s);
    for (const SequenceEvent& event : events) {
      v1::DecodeEvent out;
      switch (event.kind) {
        case SequenceEvent::Kind::kToken:
          out.mutable_token()->set_token_id(event.token_id);
          out.mutable_token()->set_index(static_cast<int32_t>(event.index));
          if (!writer->Write(out)) {
            return grpc::Status(grpc::StatusCode::CANCELLED, "the client went away");
          }
          break;
        case SequenceEvent::Kind::kFinished: {
          v1::DecodeFinished* finished = out.mutable_finished();
          finished->set_finish_reason(event.finish_reason);
          finished->set_completion_tokens(static_cast<int32_t>(event.completion_tokens));
          finished->set_prompt_tokens_computed(static_cast<int32_t>(event.prompt_tokens_computed));
          writer->Write(out);
          return grpc::Status::OK;
        }
        case SequenceEvent::Kind::kError:
          return rpc::ToGrpcStatus(event.error);
      }
    }
    if (context->IsCancelled()) {
      return grpc::Status(grpc::StatusCode::CANCELLED, "the client cancelled the call");
    }
    if (absl::Now() >= deadline) {
      return grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
                          absl::StrCat("request '", spec.request_id, "': deadline passed (",
                                       SequenceStateName(scheduler_.StateOf(spec.request_id)),
                                       ")"));
    }
  }
}

}  // namespace pdserve::decode
