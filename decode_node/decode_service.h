#pragma once
// The decode worker's Decode service: a thin shell around DecodeScheduler on gRPC's callback
// API (no thread is held per call).
//
// DecodeWorkerService.Decode: Reserve → `reserved` with the KV handoff (transfer token, target
// blocks, layout, the transports offered, the lease) → wait for the KV (bounded by the call's
// deadline and by the reservation's lease) → stream tokens with index >= 1 → `finished`. The
// caller going away or its deadline passing ends the sequence (it leaves the batch, its blocks
// are freed). The KV itself arrives through the transfer layer (KvReceiver.PushKv:
// common/kv_transfer/grpc/kv_receiver_service.h, over this worker's scheduler); a bad chunk
// fails that one sequence, whose Decode stream ends with the same error.
//
// Waiting for blocks is a place in the scheduler's FIFO, not a thread: past
// SchedulerOptions::max_waiting_reservations the call ends at once with RESOURCE_EXHAUSTED.
// Each call is one reactor that writes one message at a time: the scheduler tells it when its
// sequence has events, and it takes the next one when the previous write completed. A client
// that stops reading stops the writes (gRPC flow control): its sequence leaves the batch once
// SchedulerOptions::max_undelivered_tokens are untaken, and after stalled_stream_timeout the
// call ends with ABORTED (the server gave up on a stream nobody read; DEADLINE_EXCEEDED would
// blame the caller's own deadline, which had not passed).

#include <vector>

#include "common.pb.h"
#include "common/kv_transfer/handoff.h"
#include "common/rpc/call_authorization.h"
#include "common/rpc/drain_gate.h"
#include "decode_node/decode_scheduler.h"
#include "grpcpp/support/server_callback.h"
#include "worker.grpc.pb.h"

namespace pdserve::decode {

struct DecodeServiceOptions {
  // What every reservation offers the prefill worker, in order of preference; grpc (the control
  // stream) when empty.
  std::vector<kv_transfer::TransportOffer> kv_offers;
  // Who may call Decode: the cluster (rpc::ClusterSecurity::policy).
  rpc::SecurityPolicy security;
  // Closed while the worker drains: Decode is refused with UNAVAILABLE (not owned; may be null).
  const rpc::DrainGate* drain_gate = nullptr;
};

class DecodeWorkerService final : public v1::DecodeWorker::CallbackService {
 public:
  // `scheduler` must outlive the server that serves this service.
  DecodeWorkerService(DecodeScheduler& scheduler, DecodeServiceOptions options)
      : scheduler_(scheduler), options_(options) {}

  // A check that must refuse the call before anything else happens fits as the first line:
  //   if (!ok) return RejectDecode(status);
  grpc::ServerWriteReactor<v1::DecodeEvent>* Decode(grpc::CallbackServerContext* context,
                                                    const v1::DecodeRequest* request) override;

 private:
  DecodeScheduler& scheduler_;
  const DecodeServiceOptions options_;
};

// A Decode reactor that ends the call with `status` and writes nothing.
grpc::ServerWriteReactor<v1::DecodeEvent>* RejectDecode(const grpc::Status& status);


}  // namespace pdserve::decode
