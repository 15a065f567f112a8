#pragma once
// KvSink over gRPC: one KvReceiver.PushKv client stream per sequence, one cached channel per
// decode address.

#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "grpcpp/channel.h"
#include "prefill_node/kv_sink.h"

namespace pdserve::prefill {

class GrpcKvSinkFactory final : public KvSinkFactory {
 public:
  std::unique_ptr<KvSink> Open(const std::string& decode_address,
                               std::chrono::system_clock::time_point deadline) override;

 private:
  std::shared_ptr<grpc::Channel> ChannelFor(const std::string& address);

  std::mutex mutex_;
  std::map<std::string, std::shared_ptr<grpc::Channel>> channels_;  // guarded by mutex_
};

}  // namespace pdserve::prefill
