#include "router/registry_service.h"

#include <cstdio>
#include <string>

#include "common/rpc/grpc_status.h"

namespace pdserve::router {

grpc::Status RegistryService::RegisterWorker(grpc::ServerContext* context,
                                             const v1::RegisterWorkerRequest* request,
                                             v1::RegisterWorkerResponse* response) {
  if (absl::Status s = rpc::AuthorizeClusterPeer(*context, security_); !s.ok()) {
    std::fprintf(stderr, "router: refused RegisterWorker of %s from %s: %s\n",
                 request->worker_id().c_str(), context->peer().c_str(),
                 std::string(s.message()).c_str());
    return rpc::ToGrpcStatus(s);
  }
  WorkerRegistration registration;
  registration.worker_id = request->worker_id();
  registration.role = request->role();
  registration.address = request->address();
  registration.load = request->load();
  registration.kv_layout = request->kv_layout();
  registration.model_name = request->model_name();
  absl::Status status = registry_.Register(registration);
  if (status.ok()) {
    response->set_heartbeat_interval_ms(heartbeat_interval_ms_);
    std::fprintf(stderr, "router: worker %s (%s) registered at %s\n", request->worker_id().c_str(),
                 v1::WorkerRole_Name(request->role()).c_str(), request->address().c_str());
  } else {
    std::fprintf(stderr, "router: refused the registration of worker %s (%s) at %s: %s\n",
                 request->worker_id().c_str(), v1::WorkerRole_Name(request->role()).c_str(),
                 request->address().c_str(), std::string(status.message()).c_str());
  }
  return rpc::ToGrpcStatus(status);
}

grpc::Status RegistryService::Heartbeat(grpc::ServerContext* context,
                                        const v1::HeartbeatRequest* request,
                                        v1::HeartbeatResponse* response) {
  if (absl::Status s = rpc::AuthorizeClusterPeer(*context, security_); !s.ok()) {
    return rpc::ToGrpcStatus(s);
  }
  response->set_registered(registry_.Heartbeat(request->worker_id(), request->load()));
  return grpc::Status::OK;
}

grpc::Status RegistryService::Deregister(grpc::ServerContext* context,
                                         const v1::DeregisterWorkerRequest* request,
                                         v1::DeregisterWorkerResponse* response) {
  if (absl::Status s = rpc::AuthorizeClusterPeer(*context, security_); !s.ok()) {
    return rpc::ToGrpcStatus(s);
  }
  if (request->worker_id().empty()) {
    return rpc::ToGrpcStatus(absl::InvalidArgumentError("Deregister: worker_id is empty"));
  }
  const bool removed = registry_.Deregister(request->worker_id(), request->address());
  response->set_was_registered(removed);
  std::fprintf(stderr, "router: worker %s (%s) %s\n", request->worker_id().c_str(),
               request->address().empty() ? "any address" : request->address().c_str(),
               removed ? "deregistered: it is draining, no new work goes to it"
                       : "asked to deregister but is not registered there: nothing to do");
  return grpc::Status::OK;
}

}  // namespace pdserve::router
