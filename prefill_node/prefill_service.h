#pragma once
// The PrefillWorker gRPC service: a thin shell that turns a PrefillRequest into a PrefillJob for
// the scheduler and its status into a gRPC status. On gRPC's callback API: no thread waits on a
// request; the scheduler's completion callback finishes the call, and a cancelled call (or one
// whose deadline passed) cancels its job.

#include "common/rpc/call_authorization.h"
#include "common/rpc/drain_gate.h"
#include "grpcpp/server_context.h"
#include "grpcpp/support/server_callback.h"
#include "prefill_node/prefill_metrics.h"
#include "prefill_node/prefill_scheduler.h"
#include "common.pb.h"
#include "worker.grpc.pb.h"

namespace pdserve::prefill {

class PrefillService final : public v1::PrefillWorker::CallbackService {
 public:
  // `scheduler` must outlive the service. With log_requests, one line per request (outcome or
  // error) goes to stderr.
  // `security`: who may call Prefill (rpc::ClusterSecurity::policy; default: anyone).
  // `drain_gate`: closed while the worker drains, when Prefill is refused with UNAVAILABLE (not
  // owned; null: never). `metrics` (not owned; null: none) records every call that passed
  // authorization and the drain gate.
  explicit PrefillService(PrefillScheduler& scheduler, bool log_requests = false,
                          rpc::SecurityPolicy security = {},
                          const rpc::DrainGate* drain_gate = nullptr,
                          PrefillMetrics* metrics = nullptr)
      : scheduler_(scheduler),
        log_requests_(log_requests),
        security_(std::move(security)),
        drain_gate_(drain_gate),
        metrics_(metrics) {}

  // A check that must refuse the call before anything else happens fits as the first line:
  //   if (!ok) return RejectPrefill(context, status);
  grpc::ServerUnaryReactor* Prefill(grpc::CallbackServerContext* context,
                                    const v1::PrefillRequest* request,
                                    v1::PrefillResponse* response) override;

 private:
  PrefillScheduler& scheduler_;
  const bool log_requests_;
  const rpc::SecurityPolicy security_;
  const rpc::DrainGate* const drain_gate_;
  PrefillMetrics* const metrics_;
};

// Finishes the call with `status` at once.
grpc::ServerUnaryReactor* RejectPrefill(grpc::CallbackServerContext* context,
                                        const grpc::Status& status);


}  // namespace pdserve::prefill
