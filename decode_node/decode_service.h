#pragma once
// The decode worker's gRPC services: thin shells around DecodeScheduler.
//
// DecodeWorkerService.Decode: Reserve → `reserved` → wait for the KV (bounded by the call's
// deadline and by kv_timeout) → stream tokens with index >= 1 → `finished`. The caller going
// away or its deadline passing ends the sequence (it leaves the batch, its blocks are freed).
// KvReceiverService.PushKv: verifies every chunk and installs its blocks; a bad chunk fails that
// one sequence (its Decode stream ends with the same error).
//
// Both are synchronous handlers whose every wait is bounded (polled every few ms against
// cancellation and deadlines).

#include <chrono>

#include "absl/time/time.h"
#include "common.pb.h"
#include "decode_node/decode_scheduler.h"
#include "kv_transfer.grpc.pb.h"
#include "worker.grpc.pb.h"

namespace pdserve::decode {

struct DecodeServiceOptions {
  // Longest wait for a reserved sequence's KV when the call has no earlier deadline.
  absl::Duration kv_timeout = absl::Seconds(60);
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

class KvReceiverService final : public v1::KvReceiver::Service {
 public:
  explicit KvReceiverService(DecodeScheduler& scheduler) : scheduler_(scheduler) {}

  grpc::Status PushKv(grpc::ServerContext* context, grpc::ServerReader<v1::KvChunk>* reader,
                      v1::PushKvResponse* response) override;

 private:
  DecodeScheduler& scheduler_;
};

// The load a decode worker reports with each heartbeat.
v1::WorkerLoad WorkerLoadToProto(const SchedulerLoad& load);

}  // namespace pdserve::decode
