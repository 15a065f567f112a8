#include "prefill_node/prefill_service.h"

#include <atomic>
#include <iostream>
#include <optional>
#include <string>
#include <utility>

#include "absl/strings/str_format.h"
#include "common/kv_transfer/grpc/handoff_proto.h"
#include "common/rpc/grpc_status.h"
#include "common/rpc/proto_convert.h"

namespace pdserve::prefill {
namespace {

// The job a request asks for, or why it asks for none.
absl::StatusOr<PrefillJob> JobFromRequest(const v1::PrefillRequest& request) {
  PrefillJob job;
  job.request_id = request.request_id();
  job.prompt_ids.assign(request.prompt_ids().begin(), request.prompt_ids().end());
  job.sampling = rpc::SamplingFromProto(request.sampling());
  if (!request.has_handoff()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "request %s: no KV handoff (the decode worker's reservation answer)",
        request.request_id()));
  }
  absl::StatusOr<kv_transfer::Handoff> handoff = kv_transfer::HandoffFromProto(request.handoff());
  if (!handoff.ok()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("request %s: %s", request.request_id(), handoff.status().message()));
  }
  job.handoff = *std::move(handoff);
  job.handoff.request_id = request.request_id();
  job.handoff.control_address = request.decode_address();
  return job;
}

// One Prefill call. The scheduler's done callback is the only path to Finish once the job is
// started; OnCancel only asks the scheduler to stop the job (which then calls done).
class PrefillReactor final : public grpc::ServerUnaryReactor {
 public:
  PrefillReactor(PrefillScheduler& scheduler, bool log_requests, PrefillMetrics* metrics,
                 grpc::CallbackServerContext* context, const v1::PrefillRequest& request,
                 v1::PrefillResponse* response)
      : scheduler_(scheduler), log_requests_(log_requests), metrics_(metrics),
        response_(response) {
    absl::StatusOr<PrefillJob> job = JobFromRequest(request);
    if (!job.ok()) {
      Complete(request, job.status());
      return;
    }
    job->deadline = rpc::CallDeadline(*context);
    absl::StatusOr<PrefillScheduler::Ticket> ticket = scheduler_.StartPrefill(
        *std::move(job), [this, request](absl::StatusOr<PrefillOutcome> outcome) {
          Complete(request, std::move(outcome));
        });
    if (!ticket.ok()) {
      Complete(request, ticket.status());
      return;
    }
    ticket_ = *ticket;
  }

  void OnCancel() override {
    if (ticket_.has_value()) {
      scheduler_.Cancel(*ticket_, absl::CancelledError("the caller cancelled the prefill call"));
    }
  }
  void OnDone() override { delete this; }

 private:
  // Fills the response and finishes the call: the last thing that touches this reactor.
  void Complete(const v1::PrefillRequest& request, absl::StatusOr<PrefillOutcome> outcome) {
    if (metrics_ != nullptr) metrics_->RecordPrefill(request.prompt_ids_size(), outcome);
    if (log_requests_) {
      // One write per line, so that lines of concurrent requests do not interleave.
      std::cerr << (outcome.ok()
                        ? absl::StrFormat(
                              "prefill %s: %d tokens, %d KV blocks to %s over %s (%.1f MB in "
                              "%.3f s), first token %d, queue %.3f s, compute %.3f s\n",
                              request.request_id(), request.prompt_ids_size(),
                              outcome->kv_blocks_sent, request.decode_address(),
                              outcome->transfer.transport, outcome->transfer.bytes / 1e6,
                              outcome->transfer.seconds, outcome->first_token,
                              outcome->queue_seconds, outcome->prefill_seconds)
                        : absl::StrFormat("prefill %s failed: %s\n", request.request_id(),
                                          outcome.status().ToString()));
    }
    if (!outcome.ok()) {
      Finish(rpc::ToGrpcStatus(outcome.status()));
      return;
    }
    response_->set_first_token(outcome->first_token);
    response_->set_queue_seconds(outcome->queue_seconds);
    response_->set_prefill_seconds(outcome->prefill_seconds);
    response_->set_kv_blocks_sent(outcome->kv_blocks_sent);
    *response_->mutable_transfer() = kv_transfer::TransferReportToProto(outcome->transfer);
    Finish(grpc::Status::OK);
  }

  PrefillScheduler& scheduler_;
  const bool log_requests_;
  PrefillMetrics* const metrics_;
  v1::PrefillResponse* const response_;
  std::optional<PrefillScheduler::Ticket> ticket_;  // set before the reactor is bound
};

}  // namespace

grpc::ServerUnaryReactor* RejectPrefill(grpc::CallbackServerContext* context,
                                        const grpc::Status& status) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(status);
  return reactor;
}

grpc::ServerUnaryReactor* PrefillService::Prefill(grpc::CallbackServerContext* context,
                                                  const v1::PrefillRequest* request,
                                                  v1::PrefillResponse* response) {
  if (absl::Status s = rpc::AuthorizeClusterPeer(*context, security_); !s.ok()) {
    return RejectPrefill(context, rpc::ToGrpcStatus(s));
  }
  if (absl::Status s = rpc::AdmitNewWork(drain_gate_); !s.ok()) {
    return RejectPrefill(context, rpc::ToGrpcStatus(s));
  }
  return new PrefillReactor(scheduler_, log_requests_, metrics_, context, *request, response);
}

}  // namespace pdserve::prefill
