#include "prefill_node/prefill_service.h"

#include <iostream>

#include "absl/strings/str_format.h"
#include "common/kv_transfer/grpc/handoff_proto.h"
#include "common/rpc/grpc_status.h"
#include "common/rpc/proto_convert.h"

namespace pdserve::prefill {

grpc::Status PrefillService::Prefill(grpc::ServerContext* context,
                                     const v1::PrefillRequest* request,
                                     v1::PrefillResponse* response) {
  PrefillJob job;
  job.request_id = request->request_id();
  job.prompt_ids.assign(request->prompt_ids().begin(), request->prompt_ids().end());
  job.sampling = rpc::SamplingFromProto(request->sampling());
  if (!request->has_handoff()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        absl::StrFormat("request %s: no KV handoff (the decode worker's "
                                        "reservation answer)", request->request_id()));
  }
  absl::StatusOr<kv_transfer::Handoff> handoff = kv_transfer::HandoffFromProto(request->handoff());
  if (!handoff.ok()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        absl::StrFormat("request %s: %s", request->request_id(),
                                        handoff.status().message()));
  }
  job.handoff = *std::move(handoff);
  job.handoff.request_id = request->request_id();
  job.handoff.control_address = request->decode_address();
  job.deadline = context->deadline();
  job.is_cancelled = [context] { return context->IsCancelled(); };
  absl::StatusOr<PrefillOutcome> outcome = scheduler_.Prefill(std::move(job));
  if (log_requests_) {
    // One write per line, so that lines of concurrent requests do not interleave.
    std::cerr << (outcome.ok()
                      ? absl::StrFormat(
                            "prefill %s: %d tokens, %d KV blocks to %s over %s (%.1f MB in "
                            "%.3f s), first token %d, queue %.3f s, compute %.3f s\n",
                            request->request_id(), request->prompt_ids_size(),
                            outcome->kv_blocks_sent, request->decode_address(),
                            outcome->transfer.transport, outcome->transfer.bytes / 1e6,
                            outcome->transfer.seconds, outcome->first_token,
                            outcome->queue_seconds, outcome->prefill_seconds)
                      : absl::StrFormat("prefill %s failed: %s\n", request->request_id(),
                                        outcome.status().ToString()));
  }
  if (!outcome.ok()) return rpc::ToGrpcStatus(outcome.status());
  response->set_first_token(outcome->first_token);
  response->set_queue_seconds(outcome->queue_seconds);
  response->set_prefill_seconds(outcome->prefill_seconds);
  response->set_kv_blocks_sent(outcome->kv_blocks_sent);
  *response->mutable_transfer() = kv_transfer::TransferReportToProto(outcome->transfer);
  return grpc::Status::OK;
}

v1::WorkerLoad WorkerLoadToProto(const PrefillLoad& load) {
  v1::WorkerLoad out;
  out.set_queue_length(load.queue_length);
  out.set_active_sequences(load.active_sequences);
  out.set_free_kv_blocks(load.free_kv_blocks);
  out.set_total_kv_blocks(load.total_kv_blocks);
  return out;
}

}  // namespace pdserve::prefill
