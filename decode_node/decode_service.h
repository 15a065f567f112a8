#pragma once
// The decode worker's Decode service: a thin shell around DecodeScheduler.
//
// DecodeWorkerService.Decode: Reserve → `reserved` with the KV handoff (transfer token, target
// blocks, layout, the transports offered, the lease) → wait for the KV (bounded by the call's
// deadline and by the reservation's lease) → stream tokens with index >= 1 → `finished`. The
// caller going away or its deadline passing ends the sequence (it leaves the batch, its blocks
// are freed). The KV itself arrives through the transfer layer (KvReceiver.PushKv:
// common/kv_transfer/grpc/kv_receiver_service.h, over this worker's scheduler); a bad chunk
// fails that one sequence, whose Decode stream ends with the same error.
//
// A synchronous handler whose every wait is bounded (polled every few ms against cancellation
// and deadlines).

#include <vector>

#include "absl/time/time.h"
#include "common.pb.h"
#include "common/kv_transfer/handoff.h"
#include "decode_node/decode_scheduler.h"
#include "worker.grpc.pb.h"

namespace pdserve::decode {

struct DecodeServiceOptions {
  // What every reservation offers the prefill worker, in order of preference; grpc (the control
  // stream) when empty.
  std::vector<kv_transfer::TransportOffer> kv_offers;
};

class DecodeWorkerService final : public v1::DecodeWorker::Service {
 public:
  DecodeWorkerService(DecodeScheduler& scheduler, DecodeServiceOptions options)
      : scheduler_(scheduler), options_(options) {}

  grpc::Status Decode(grpc::ServerContext* context, const v1::DecodeRequest* request,
                      grpc::ServerWriter<v1::DecodeEvent>* writer) override;

 private:
  DecodeScheduler& scheduler_;
  const DecodeServiceOptions options_;
};

// The load a decode worker reports with each heartbeat.
v1::WorkerLoad WorkerLoadToProto(const SchedulerLoad& load);

}  // namespace pdserve::decode
