#pragma once
// The PrefillWorker gRPC service: a thin shell that turns a PrefillRequest into a PrefillJob for
// the scheduler and its status into a gRPC status.

#include "grpcpp/server_context.h"
#include "prefill_node/prefill_scheduler.h"
#include "common.pb.h"
#include "worker.grpc.pb.h"

namespace pdserve::prefill {

class PrefillService final : public v1::PrefillWorker::Service {
 public:
  // `scheduler` must outlive the service. With log_requests, one line per request (outcome or
  // error) goes to stderr.
  explicit PrefillService(PrefillScheduler& scheduler, bool log_requests = false)
      : scheduler_(scheduler), log_requests_(log_requests) {}

  grpc::Status Prefill(grpc::ServerContext* context, const v1::PrefillRequest* request,
                       v1::PrefillResponse* response) override;

 private:
  PrefillScheduler& scheduler_;
  const bool log_requests_;
};

// The load a prefill worker reports with each heartbeat.
v1::WorkerLoad WorkerLoadToProto(const PrefillLoad& load);

}  // namespace pdserve::prefill
