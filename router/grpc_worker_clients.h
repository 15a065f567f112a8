#pragma once
// PrefillClient and DecodeClient over gRPC's callback client API: no thread per call. Channels
// come from one rpc::ChannelCache (one per worker address, the cluster's reconnect policy and
// credentials).

#include <memory>

#include "common/rpc/channel_cache.h"
#include "router/worker_clients.h"

namespace pdserve::router {

class GrpcPrefillClient final : public PrefillClient {
 public:
  explicit GrpcPrefillClient(rpc::ChannelCache& channels) : channels_(channels) {}
  std::unique_ptr<CancellableCall> Prefill(const WorkerSnapshot& worker,
                                           const v1::PrefillRequest& request, absl::Time deadline,
                                           Done done) override;

 private:
  rpc::ChannelCache& channels_;
};

class GrpcDecodeClient final : public DecodeClient {
 public:
  explicit GrpcDecodeClient(rpc::ChannelCache& channels) : channels_(channels) {}
  std::unique_ptr<DecodeStream> Decode(const WorkerSnapshot& worker,
                                       const v1::DecodeRequest& request, absl::Time deadline,
                                       OnResult on_result) override;

 private:
  rpc::ChannelCache& channels_;
};

}  // namespace pdserve::router
