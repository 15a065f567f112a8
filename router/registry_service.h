#pragma once
// WorkerRegistry: the gRPC shell over WorkerRegistry (registration and heartbeats).

#include "worker.grpc.pb.h"
#include "router/worker_registry.h"

namespace pdserve::router {

class RegistryService final : public v1::WorkerRegistry::Service {
 public:
  // `registry` outlives the service. Workers are told to heartbeat every
  // `heartbeat_interval_ms`.
  RegistryService(WorkerRegistry& registry, int heartbeat_interval_ms)
      : registry_(registry), heartbeat_interval_ms_(heartbeat_interval_ms) {}

  // The registry's answer, as a gRPC status (FAILED_PRECONDITION: the worker may not join and
  // should not retry). Every answer is logged to stderr, refusals with their reason.
  grpc::Status RegisterWorker(grpc::ServerContext* context,
                              const v1::RegisterWorkerRequest* request,
                              v1::RegisterWorkerResponse* response) override;
  grpc::Status Heartbeat(grpc::ServerContext* context, const v1::HeartbeatRequest* request,
                         v1::HeartbeatResponse* response) override;

 private:
  WorkerRegistry& registry_;
  const int heartbeat_interval_ms_;
};

}  // namespace pdserve::router
