// The security of real servers and channels on 127.0.0.1: ServingServer with the credentials of
// ClusterSecurity, NewClusterChannel / ChannelCache / WorkerHeartbeat with its channel options,
// and the handler checks (AuthorizeClusterPeer, AuthorizePublicCall) reading real calls. Each
// refusal is checked for its status code. Certificates are made by openssl at test time.

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>

#include "common/rpc/call_authorization.h"
#include "common/rpc/channel_cache.h"
#include "common/rpc/cluster_security.h"
#include "common/rpc/finished_reactor.h"
#include "common/rpc/grpc_status.h"
#include "common/rpc/server_process.h"
#include "common/rpc/worker_heartbeat.h"
#include "gmock/gmock.h"
#include "grpcpp/create_channel.h"
#include "gtest/gtest.h"
#include "router.grpc.pb.h"
#include "tests/common/rpc/test_certs.h"
#include "worker.grpc.pb.h"

namespace pdserve::rpc {
namespace {

using ::testing::HasSubstr;

constexpr char kApiKey[] = "test-api-key-0123456789";

// Cluster RPCs: Heartbeat and RegisterWorker answer only cluster peers.
class ClusterOnlyService final : public v1::WorkerRegistry::Service {
 public:
  explicit ClusterOnlyService(SecurityPolicy policy) : policy_(std::move(policy)) {}
  grpc::Status RegisterWorker(grpc::ServerContext* context, const v1::RegisterWorkerRequest*,
                              v1::RegisterWorkerResponse* response) override {
    if (absl::Status s = AuthorizeClusterPeer(*context, policy_); !s.ok()) return ToGrpcStatus(s);
    response->set_heartbeat_interval_ms(50);
    return grpc::Status::OK;
  }
  grpc::Status Heartbeat(grpc::ServerContext* context, const v1::HeartbeatRequest*,
                         v1::HeartbeatResponse* response) override {
    if (absl::Status s = AuthorizeClusterPeer(*context, policy_); !s.ok()) return ToGrpcStatus(s);
    response->set_registered(true);
    return grpc::Status::OK;
  }

 private:
  const SecurityPolicy policy_;
};

// The public API, with callback handlers as the router's: GetStats and Generate answer holders
// of an API key (Generate then ends at once, with no message).
class PublicService final : public v1::Router::CallbackService {
 public:
  explicit PublicService(SecurityPolicy policy) : policy_(std::move(policy)) {}
  grpc::ServerUnaryReactor* GetStats(grpc::CallbackServerContext* context,
                                     const v1::GetStatsRequest*,
                                     v1::GetStatsResponse*) override {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(ToGrpcStatus(AuthorizePublicCall(*context, policy_)));
    return reactor;
  }
  grpc::ServerWriteReactor<v1::GenerateResponse>* Generate(
      grpc::CallbackServerContext* context, const v1::GenerateRequest*) override {
    if (absl::Status s = AuthorizePublicCall(*context, policy_); !s.ok()) {
      return new FinishedWriteReactor<v1::GenerateResponse>(ToGrpcStatus(s));
    }
    return new FinishedWriteReactor<v1::GenerateResponse>(grpc::Status::OK);
  }

 private:
  const SecurityPolicy policy_;
};

class SecureChannelTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    absl::StatusOr<testing::TestCerts> certs = testing::MakeTestCerts();
    ASSERT_TRUE(certs.ok()) << certs.status();
    certs_ = new testing::TestCerts(*std::move(certs));
  }
  static void TearDownTestSuite() {
    std::filesystem::remove_all(certs_->dir);
    delete certs_;
  }

  // Loads `options` and serves both test services with its policy and server credentials.
  void Serve(SecurityOptions options, ClientCertificates clients) {
    absl::StatusOr<ClusterSecurity> security = ClusterSecurity::Load(options);
    ASSERT_TRUE(security.ok()) << security.status();
    security_ = *std::move(security);
    cluster_service_ = std::make_unique<ClusterOnlyService>(security_.policy());
    public_service_ = std::make_unique<PublicService>(security_.policy());
    absl::StatusOr<std::unique_ptr<ServingServer>> server = ServingServer::Start(
        {.credentials = security_.ServerCredentials(clients)},
        {cluster_service_.get(), public_service_.get()});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
  }

  SecurityOptions TlsOptions() const {
    return {.tls_cert_file = certs_->node_pem, .tls_key_file = certs_->node_key,
            .tls_ca_file = certs_->ca_pem};
  }

  grpc::Status Heartbeat(const ChannelOptions& options) {
    auto stub = v1::WorkerRegistry::NewStub(NewClusterChannel(server_->LocalAddress(), options));
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    v1::HeartbeatResponse response;
    return stub->Heartbeat(&context, v1::HeartbeatRequest(), &response);
  }

  grpc::Status GetStats(const ChannelOptions& options, const std::string& authorization) {
    auto stub = v1::Router::NewStub(NewClusterChannel(server_->LocalAddress(), options));
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    if (!authorization.empty()) context.AddMetadata("authorization", authorization);
    v1::GetStatsResponse response;
    return stub->GetStats(&context, v1::GetStatsRequest(), &response);
  }

  grpc::Status Generate(const ChannelOptions& options, const std::string& authorization) {
    auto stub = v1::Router::NewStub(NewClusterChannel(server_->LocalAddress(), options));
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    if (!authorization.empty()) context.AddMetadata("authorization", authorization);
    std::unique_ptr<grpc::ClientReader<v1::GenerateResponse>> reader =
        stub->Generate(&context, v1::GenerateRequest());
    v1::GenerateResponse response;
    while (reader->Read(&response)) {
    }
    return reader->Finish();
  }

  // TLS that trusts `ca` and presents `cert`/`key` (none when empty).
  static ChannelOptions Ssl(const std::string& ca, const std::string& cert = "",
                            const std::string& key = "") {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = testing::ReadText(ca);
    if (!cert.empty()) {
      ssl.pem_cert_chain = testing::ReadText(cert);
      ssl.pem_private_key = testing::ReadText(key);
    }
    return {.credentials = grpc::SslCredentials(ssl)};
  }

  static testing::TestCerts* certs_;
  ClusterSecurity security_;
  std::unique_ptr<ClusterOnlyService> cluster_service_;
  std::unique_ptr<PublicService> public_service_;
  std::unique_ptr<ServingServer> server_;
};

testing::TestCerts* SecureChannelTest::certs_ = nullptr;

TEST_F(SecureChannelTest, WorkerPortTakesOnlyClusterCertificates) {
  Serve(TlsOptions(), ClientCertificates::kRequire);
  EXPECT_TRUE(Heartbeat(security_.ClusterChannelOptions()).ok());

  // Refused in the handshake: the server never sees the call.
  EXPECT_EQ(Heartbeat({}).error_code(), grpc::StatusCode::UNAVAILABLE) << "plaintext";
  EXPECT_EQ(Heartbeat(Ssl(certs_->ca_pem)).error_code(), grpc::StatusCode::UNAVAILABLE)
      << "TLS without a client certificate";
  EXPECT_EQ(Heartbeat(Ssl(certs_->ca_pem, certs_->stranger_pem, certs_->stranger_key))
                .error_code(),
            grpc::StatusCode::UNAVAILABLE)
      << "a client certificate of another CA";
}

TEST_F(SecureChannelTest, RouterPortTakesPublicClientsAndChecksClusterCallsInTheHandler) {
  SecurityOptions options = TlsOptions();
  options.api_keys_file = certs_->WriteFile("keys", std::string(kApiKey) + "\n");
  Serve(options, ClientCertificates::kVerifyIfPresented);

  EXPECT_TRUE(Heartbeat(security_.ClusterChannelOptions()).ok()) << "a worker";
  const ChannelOptions public_client = Ssl(certs_->ca_pem);
  EXPECT_TRUE(GetStats(public_client, std::string("Bearer ") + kApiKey).ok());

  const grpc::Status no_key = GetStats(public_client, "");
  EXPECT_EQ(no_key.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(no_key.error_message(), HasSubstr("missing API key"));
  const grpc::Status wrong_key = GetStats(public_client, "Bearer wrong-key-0123456789");
  EXPECT_EQ(wrong_key.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(wrong_key.error_message(), HasSubstr("wrong API key"));

  EXPECT_TRUE(Generate(public_client, std::string("Bearer ") + kApiKey).ok());
  const grpc::Status refused_stream = Generate(public_client, "Bearer wrong-key-0123456789");
  EXPECT_EQ(refused_stream.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(refused_stream.error_message(), HasSubstr("wrong API key"));

  const grpc::Status stranger = Heartbeat(public_client);
  EXPECT_EQ(stranger.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(stranger.error_message(), HasSubstr("no client certificate"));

  EXPECT_EQ(Heartbeat({}).error_code(), grpc::StatusCode::UNAVAILABLE) << "plaintext";
  EXPECT_EQ(Heartbeat(Ssl(certs_->ca_pem, certs_->stranger_pem, certs_->stranger_key))
                .error_code(),
            grpc::StatusCode::UNAVAILABLE)
      << "a client certificate of another CA";
  EXPECT_EQ(GetStats(Ssl(certs_->stranger_ca_pem), std::string("Bearer ") + kApiKey)
                .error_code(),
            grpc::StatusCode::UNAVAILABLE)
      << "a client that does not trust the router's CA";
}

TEST_F(SecureChannelTest, APublicKeyOnAClusterCallIsPermissionDenied) {
  SecurityOptions options{.cluster_secret_file =
                              certs_->WriteFile("secret", "cluster-secret-0123456789\n"),
                          .api_keys_file = certs_->WriteFile("keys", std::string(kApiKey))};
  Serve(options, ClientCertificates::kVerifyIfPresented);
  auto stub = v1::WorkerRegistry::NewStub(NewClusterChannel(server_->LocalAddress(), {}));
  grpc::ClientContext context;
  context.AddMetadata("authorization", std::string("Bearer ") + kApiKey);
  v1::HeartbeatResponse response;
  const grpc::Status status = stub->Heartbeat(&context, v1::HeartbeatRequest(), &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(status.error_message(), HasSubstr("public API only"));
}

TEST_F(SecureChannelTest, SecretModeChecksTheSecretEveryChannelSends) {
  Serve({.cluster_secret_file = certs_->WriteFile("secret", "cluster-secret-0123456789\n")},
        ClientCertificates::kRequire);  // no TLS: the port is plaintext
  EXPECT_TRUE(Heartbeat(security_.ClusterChannelOptions()).ok());
  ChannelCache cache(security_.ClusterChannelOptions());
  {
    auto stub = v1::WorkerRegistry::NewStub(cache.Get(server_->LocalAddress()));
    grpc::ClientContext context;
    v1::HeartbeatResponse response;
    EXPECT_TRUE(stub->Heartbeat(&context, v1::HeartbeatRequest(), &response).ok());
  }

  const grpc::Status missing = Heartbeat({});
  EXPECT_EQ(missing.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(missing.error_message(), HasSubstr("no cluster secret"));
  const grpc::Status wrong = Heartbeat({.cluster_secret = "cluster-secret-0123456788"});
  EXPECT_EQ(wrong.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(wrong.error_message(), HasSubstr("wrong cluster secret"));
  EXPECT_THAT(wrong.error_message(), ::testing::Not(HasSubstr("0123456788")));
  // No API keys configured: the public API is open.
  EXPECT_TRUE(GetStats({}, "").ok());
}

TEST_F(SecureChannelTest, WorkerHeartbeatRegistersOverItsRouterChannel) {
  Serve(TlsOptions(), ClientCertificates::kVerifyIfPresented);
  WorkerHeartbeatOptions options;
  options.router_address = server_->LocalAddress();
  options.worker_id = "decode-0";
  options.register_timeout = std::chrono::milliseconds(3000);
  options.router_channel = security_.ClusterChannelOptions();
  WorkerHeartbeat heartbeat(options, nullptr);
  EXPECT_TRUE(heartbeat.Start().ok());

  // The same worker without the cluster's credentials never gets in.
  options.router_channel = Ssl(certs_->ca_pem);
  options.register_timeout = std::chrono::milliseconds(500);
  WorkerHeartbeat outsider(options, nullptr);
  const absl::Status status = outsider.Start();
  EXPECT_EQ(status.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(status.message(), HasSubstr("no client certificate"));
}

}  // namespace
}  // namespace pdserve::rpc
