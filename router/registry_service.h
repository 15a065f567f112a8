#pragma once
// WorkerRegistry: the gRPC shell over WorkerRegistry (registration, heartbeats, leaving). Only the
// cluster's own workers may call it (rpc::AuthorizeClusterPeer); a refused call changes nothing.

#include <utility>

#include "common/rpc/call_authorization.h"
#include "router/worker_registry.h"
#include "worker.grpc.pb.h"

namespace pdserve::router {

class RegistryService final : public v1::WorkerRegistry::Service {
 public:
  // `registry` outlives the service. Workers are told to heartbeat every
  // `heartbeat_interval_ms`. `security` says who is a cluster worker (ClusterSecurity::policy;
  // the default lets anyone in, as a cluster without security options does).
  RegistryService(WorkerRegistry& registry, int heartbeat_interval_ms,
                  rpc::SecurityPolicy security = {})
      : registry_(registry),
        heartbeat_interval_ms_(heartbeat_interval_ms),
        security_(std::move(security)) {}

  // The registry's answer, as a gRPC status (FAILED_PRECONDITION: the worker may not join and
  // should not retry), or UNAUTHENTICATED / PERMISSION_DENIED for a caller that is not a
  // cluster worker. Every answer is logged to stderr, refusals with their reason.
  grpc::Status RegisterWorker(grpc::ServerContext* context,
                              const v1::RegisterWorkerRequest* request,
                              v1::RegisterWorkerResponse* response) override;
  grpc::Status Heartbeat(grpc::ServerContext* context, const v1::HeartbeatRequest* request,
                         v1::HeartbeatResponse* response) override;
  // WorkerRegistry::Deregister; INVALID_ARGUMENT for an empty worker_id. Logged to stderr.
  grpc::Status Deregister(grpc::ServerContext* context, const v1::DeregisterWorkerRequest* request,
                          v1::DeregisterWorkerResponse* response) override;

 private:
  WorkerRegistry& registry_;
  const int heartbeat_interval_ms_;
  const rpc::SecurityPolicy security_;
};

}  // namespace pdserve::router
