#include "decode_node/decode_service.h"

#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/kv_transfer/grpc/handoff_proto.h"
#include "common/rpc/grpc_status.h"
#include "common/rpc/proto_convert.h"

namespace pdserve::decode {
namespace {

class RejectedDecode final : public grpc::ServerWriteReactor<v1::DecodeEvent> {
 public:
  explicit RejectedDecode(const grpc::Status& status) { Finish(status); }
  void OnDone() override { delete this; }
};

// One Decode call's state, shared by its reactor and the scheduler's callbacks (which may run
// after the reactor is gone: they then find the call finished and do nothing).
//
// Every reactor operation (StartWrite, Finish) happens under mutex_ while !finished_; Finish sets
// finished_ first, so nothing touches the reactor once it may be deleted (OnDone never takes
// mutex_). Lock order: mutex_, then the scheduler's (TakeEvent). Scheduler calls that run
// callbacks (StartReserve, Release) are made without mutex_.
class DecodeCall final : public std::enable_shared_from_this<DecodeCall> {
 public:
  DecodeCall(DecodeScheduler& scheduler, const DecodeServiceOptions& options,
             grpc::ServerWriteReactor<v1::DecodeEvent>* reactor)
      : scheduler_(scheduler), options_(options), reactor_(reactor) {}

  // Asks the scheduler for the reservation; a refusal finishes the call at once.
  void Start(const v1::DecodeRequest& request, absl::Time deadline) {
    ReserveCall call;
    call.spec.request_id = request.request_id();
    call.spec.prompt_ids.assign(request.prompt_ids().begin(), request.prompt_ids().end());
    call.spec.max_tokens = request.max_tokens();
    call.spec.sampling = rpc::SamplingFromProto(request.sampling());
    call.spec.ignore_eos = request.ignore_eos();
    call.reserve_deadline = deadline;
    call.deadline = deadline;
    std::weak_ptr<DecodeCall> weak = weak_from_this();
    call.on_reserved = [weak](absl::StatusOr<Reservation> reservation) {
      if (std::shared_ptr<DecodeCall> self = weak.lock()) self->OnReserved(std::move(reservation));
    };
    call.on_events = [weak] {
      if (std::shared_ptr<DecodeCall> self = weak.lock()) self->Pump();
    };
    request_id_ = request.request_id();
    {
      absl::MutexLock lock(&mutex_);
      registered_ = true;  // before any callback can release it
    }
    if (absl::Status s = scheduler_.StartReserve(std::move(call)); !s.ok()) {
      absl::MutexLock lock(&mutex_);
      registered_ = false;  // the id may be another call's
      FinishLocked(rpc::ToGrpcStatus(s));
    }
  }

  void OnWriteDone(bool ok) {
    absl::MutexLock lock(&mutex_);
    writing_ = false;
    if (!ok) {
      FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "the client went away"));
      return;
    }
    PumpLocked();
  }

  void OnCancel() {
    {
      absl::MutexLock lock(&mutex_);
      FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "the client cancelled the call"));
    }
    ReleaseSequence();  // frees the blocks now, not when the last write drains
  }

  void OnDone() { ReleaseSequence(); }

 private:
  void OnReserved(absl::StatusOr<Reservation> reservation) {
    absl::MutexLock lock(&mutex_);
    if (finished_) return;
    if (!reservation.ok()) {
      FinishLocked(rpc::ToGrpcStatus(reservation.status()));
      return;
    }
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
    out_.Clear();
    out_.mutable_reserved()->set_kv_blocks(static_cast<int32_t>(reservation->n_blocks));
    *out_.mutable_reserved()->mutable_handoff() = kv_transfer::HandoffToProto(handoff);
    reserved_ = true;
    writing_ = true;
    reactor_->StartWrite(&out_);
  }

  void Pump() {
    absl::MutexLock lock(&mutex_);
    PumpLocked();
  }

  // Writes the sequence's next event unless a write is in flight (its OnWriteDone comes back
  // here) or `reserved` has not gone first.
  void PumpLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) {
    if (finished_ || writing_ || !reserved_) return;
    std::optional<SequenceEvent> event = scheduler_.TakeEvent(request_id_);
    if (!event.has_value()) return;
    out_.Clear();
    switch (event->kind) {
      case SequenceEvent::Kind::kToken:
        out_.mutable_token()->set_token_id(event->token_id);
        out_.mutable_token()->set_index(static_cast<int32_t>(event->index));
        writing_ = true;
        reactor_->StartWrite(&out_);
        return;
      case SequenceEvent::Kind::kFinished: {
        v1::DecodeFinished* finished = out_.mutable_finished();
        finished->set_finish_reason(request::FinishReasonName(event->finish_reason));
        finished->set_completion_tokens(static_cast<int32_t>(event->completion_tokens));
        finished->set_prompt_tokens_computed(static_cast<int32_t>(event->prompt_tokens_computed));
        finished_ = true;
        reactor_->StartWriteAndFinish(&out_, grpc::WriteOptions(), grpc::Status::OK);
        return;
      }
      case SequenceEvent::Kind::kError:
        FinishLocked(rpc::ToGrpcStatus(event->error));
        return;
    }
  }

  void FinishLocked(const grpc::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) {
    if (finished_) return;
    finished_ = true;
    reactor_->Finish(status);
  }

  void ReleaseSequence() {
    {
      absl::MutexLock lock(&mutex_);
      if (!registered_) return;
      registered_ = false;
    }
    scheduler_.Release(request_id_);
  }

  DecodeScheduler& scheduler_;
  const DecodeServiceOptions& options_;
  grpc::ServerWriteReactor<v1::DecodeEvent>* const reactor_;
  std::string request_id_;  // set by Start, then read-only

  absl::Mutex mutex_;
  bool registered_ ABSL_GUARDED_BY(mutex_) = false;  // the scheduler holds our request id
  bool reserved_ ABSL_GUARDED_BY(mutex_) = false;    // `reserved` was (being) written
  bool writing_ ABSL_GUARDED_BY(mutex_) = false;     // a write is in flight
  bool finished_ ABSL_GUARDED_BY(mutex_) = false;    // Finish was called
  v1::DecodeEvent out_ ABSL_GUARDED_BY(mutex_);      // the message in flight
};

class DecodeReactor final : public grpc::ServerWriteReactor<v1::DecodeEvent> {
 public:
  DecodeReactor(DecodeScheduler& scheduler, const DecodeServiceOptions& options,
                const v1::DecodeRequest& request, absl::Time deadline)
      : call_(std::make_shared<DecodeCall>(scheduler, options, this)) {
    call_->Start(request, deadline);
  }
  void OnWriteDone(bool ok) override { call_->OnWriteDone(ok); }
  void OnCancel() override { call_->OnCancel(); }
  void OnDone() override {
    call_->OnDone();
    delete this;
  }

 private:
  const std::shared_ptr<DecodeCall> call_;
};

}  // namespace

grpc::ServerWriteReactor<v1::DecodeEvent>* RejectDecode(const grpc::Status& status) {
  return new RejectedDecode(status);
}

grpc::ServerWriteReactor<v1::DecodeEvent>* DecodeWorkerService::Decode(
    grpc::CallbackServerContext* context, const v1::DecodeRequest* request) {
  if (absl::Status s = rpc::AuthorizeClusterPeer(*context, options_.security); !s.ok()) {
    return RejectDecode(rpc::ToGrpcStatus(s));
  }
  if (absl::Status s = rpc::AdmitNewWork(options_.drain_gate); !s.ok()) {
    return RejectDecode(rpc::ToGrpcStatus(s));
  }
  return new DecodeReactor(scheduler_, options_, *request, rpc::CallDeadline(*context));
}

}  // namespace pdserve::decode
