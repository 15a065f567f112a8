#include "common/rpc/channel_cache.h"

#include <utility>
#include <vector>

#include "grpcpp/create_channel.h"
#include "grpcpp/support/channel_arguments.h"
#include "grpcpp/support/client_interceptor.h"

namespace pdserve::rpc {
namespace {

// Adds the cluster secret to the initial metadata of every call.
class ClusterSecretInterceptor final : public grpc::experimental::Interceptor {
 public:
  explicit ClusterSecretInterceptor(std::string secret) : secret_(std::move(secret)) {}

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::PRE_SEND_INITIAL_METADATA)) {
      methods->GetSendInitialMetadata()->insert({kClusterSecretMetadataKey, secret_});
    }
    methods->Proceed();
  }

 private:
  const std::string secret_;  // a copy: the call may outlive the channel's factory
};

class ClusterSecretInterceptorFactory final
    : public grpc::experimental::ClientInterceptorFactoryInterface {
 public:
  explicit ClusterSecretInterceptorFactory(std::string secret) : secret_(std::move(secret)) {}

  grpc::experimental::Interceptor* CreateClientInterceptor(
      grpc::experimental::ClientRpcInfo* info) override {
    return new ClusterSecretInterceptor(secret_);
  }

 private:
  const std::string secret_;
};

}  // namespace

std::shared_ptr<grpc::Channel> NewClusterChannel(const std::string& address,
                                                 const ChannelOptions& options) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  std::shared_ptr<grpc::ChannelCredentials> credentials =
      options.credentials != nullptr ? options.credentials : grpc::InsecureChannelCredentials();
  std::vector<std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>>
      interceptors;
  if (!options.cluster_secret.empty()) {
    interceptors.push_back(
        std::make_unique<ClusterSecretInterceptorFactory>(options.cluster_secret));
  }
  return grpc::experimental::CreateCustomChannelWithInterceptors(address, credentials, args,
                                                                 std::move(interceptors));
}

std::shared_ptr<grpc::Channel> ChannelCache::Get(const std::string& address) {
  absl::MutexLock lock(&mu_);
  std::shared_ptr<grpc::Channel>& channel = channels_[address];
  if (channel == nullptr) channel = NewClusterChannel(address, options_);
  return channel;
}

void ChannelCache::Forget(const std::string& address) {
  absl::MutexLock lock(&mu_);
  channels_.erase(address);
}

}  // namespace pdserve::rpc
