#pragma once
// Router: the public API. Generate checks and tokenizes the request, reserves room on a decode
// worker (DecodeWorker.Decode, waiting for `reserved`), has a prefill worker run the prompt and
// ship its KV there (PrefillWorker.Prefill), then streams the first token and every decoded token
// to the client as text (TextStream: whole UTF-8 characters, stop strings cut), and a final
// message with usage and timing.
//
// Generate is a callback (reactor) method taking the request's raw bytes, so that invalid UTF-8
// is an INVALID_ARGUMENT naming the field rather than protobuf's silent parse failure. Each
// request's worker calls run, blocking, on a thread of its own; every wait there is bounded by
// the client's deadline (propagated to the worker calls, as is the client's cancellation) and by
// RouterOptions::max_request_time. GetStats and ListWorkers are synchronous.

#include <atomic>
#include <map>
#include <memory>
#include <string>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "router.grpc.pb.h"
#include "router/router_model.h"
#include "router/router_stats.h"
#include "router/worker_registry.h"

namespace pdserve::router {

struct RouterOptions {
  // Upper bound on one request's worker calls when the client sets no (shorter) deadline.
  absl::Duration max_request_time = absl::Minutes(10);
};

class RouterService final : public v1::Router::WithRawCallbackMethod_Generate<v1::Router::Service> {
 public:
  // `model`, `registry` and `stats` outlive the service.
  RouterService(const RouterModel& model, WorkerRegistry& registry, RouterStats& stats,
                Clock clock, RouterOptions options = {});

  grpc::ServerWriteReactor<grpc::ByteBuffer>* Generate(grpc::CallbackServerContext* context,
                                                       const grpc::ByteBuffer* request) override;
  grpc::Status GetStats(grpc::ServerContext* context, const v1::GetStatsRequest* request,
                        v1::GetStatsResponse* response) override;
  grpc::Status ListWorkers(grpc::ServerContext* context, const v1::ListWorkersRequest* request,
                           v1::ListWorkersResponse* response) override;

 private:
  class Call;
  class GenerateReactor;

  std::shared_ptr<grpc::Channel> ChannelTo(const std::string& address);

  const RouterModel& model_;
  WorkerRegistry& registry_;
  RouterStats& stats_;
  const Clock clock_;
  const RouterOptions options_;
  const std::string instance_id_;  // random, per router process: request ids never repeat
  std::atomic<int64_t> next_request_number_{1};
  absl::Mutex channels_mu_;
  std::map<std::string, std::shared_ptr<grpc::Channel>> channels_ ABSL_GUARDED_BY(channels_mu_);
};

}  // namespace pdserve::router
