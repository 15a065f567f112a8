#pragma once
// Channels from one pdserve process to its peers (router → workers, workers → router, prefill →
// decode). Every channel in the cluster is made here, so that they all share the same
// reconnect policy and the same credentials (rpc::ClusterSecurity::ClusterChannelOptions).
//
// Reconnect: gRPC's default backoff grows to two minutes, so a peer restarted after an outage
// would stay unreachable long after it is healthy; these channels retry at most a second apart.

#include <map>
#include <memory>
#include <string>

#include "absl/synchronization/mutex.h"
#include "grpcpp/channel.h"
#include "grpcpp/security/credentials.h"

namespace pdserve::rpc {

// The call metadata that carries the cluster secret; servers check it with AuthorizeClusterPeer
// (common/rpc/call_authorization.h).
inline constexpr char kClusterSecretMetadataKey[] = "x-pdserve-cluster-secret";

struct ChannelOptions {
  // How to reach peers; null is plaintext. With cluster TLS: SSL credentials that trust the
  // cluster CA and present this process's certificate.
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  // Non-empty: every call on the channel carries it as kClusterSecretMetadataKey. Printable
  // ASCII (a metadata value); ClusterSecurity::Load checks that.
  std::string cluster_secret;
};

// A new channel to `address` ("host:port") with the cluster's reconnect policy.
std::shared_ptr<grpc::Channel> NewClusterChannel(const std::string& address,
                                                 const ChannelOptions& options);

// One channel per address, made on first use and kept. Thread-safe.
class ChannelCache {
 public:
  explicit ChannelCache(ChannelOptions options = {}) : options_(std::move(options)) {}

  std::shared_ptr<grpc::Channel> Get(const std::string& address);
  // The next Get makes a new channel (calls on the old one go on): for a peer known to be
  // listening again while the old channel may still be backing off from its predecessor.
  void Forget(const std::string& address);

 private:
  const ChannelOptions options_;
  absl::Mutex mu_;
  std::map<std::string, std::shared_ptr<grpc::Channel>> channels_ ABSL_GUARDED_BY(mu_);
};

}  // namespace pdserve::rpc
