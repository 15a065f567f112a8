#pragma once
// Router: the public gRPC API, a thin shell around the relay (router/relay.h), which does the
// work of Generate: admission, worker calls, retries, failover, the text stream.
//
// Generate is a callback (reactor) method taking the request's raw bytes, so that invalid UTF-8
// is an INVALID_ARGUMENT naming the field rather than protobuf's silent parse failure. No thread
// is held per call: the reactor hands each message the relay produces to gRPC and reports the
// write's completion back. A RESOURCE_EXHAUSTED from the router's own limits carries the
// trailing metadata `retry-after-ms`. GetStats and ListWorkers are synchronous.

#include "common/rpc/call_authorization.h"
#include "grpcpp/grpcpp.h"
#include "router.grpc.pb.h"
#include "router/relay.h"
#include "router/router_stats.h"
#include "router/worker_registry.h"

namespace pdserve::router {

class RouterService final : public v1::Router::WithRawCallbackMethod_Generate<v1::Router::Service> {
 public:
  // `relay`, `registry` and `stats` outlive the service. `security`: who may call the public
  // API (its API keys; rpc::ClusterSecurity::policy).
  RouterService(Relay& relay, WorkerRegistry& registry, RouterStats& stats,
                rpc::SecurityPolicy security = {})
      : relay_(relay), registry_(registry), stats_(stats), security_(std::move(security)) {}

  grpc::ServerWriteReactor<grpc::ByteBuffer>* Generate(grpc::CallbackServerContext* context,
                                                       const grpc::ByteBuffer* request) override;
  grpc::Status GetStats(grpc::ServerContext* context, const v1::GetStatsRequest* request,
                        v1::GetStatsResponse* response) override;
  grpc::Status ListWorkers(grpc::ServerContext* context, const v1::ListWorkersRequest* request,
                           v1::ListWorkersResponse* response) override;

 private:
  class GenerateReactor;

  Relay& relay_;
  WorkerRegistry& registry_;
  RouterStats& stats_;
  const rpc::SecurityPolicy security_;
};

}  // namespace pdserve::router
