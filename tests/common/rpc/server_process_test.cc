#include "common/rpc/server_process.h"

#include <chrono>
#include <future>
#include <memory>
#include <string>

#include "grpcpp/create_channel.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/byte_buffer.h"
#include "gtest/gtest.h"

namespace pdserve::rpc {
namespace {

TEST(ParseHostPortTest, SplitsAtTheLastColon) {
  absl::StatusOr<HostPort> v4 = ParseHostPort("127.0.0.1:50051");
  ASSERT_TRUE(v4.ok()) << v4.status();
  EXPECT_EQ(v4->host, "127.0.0.1");
  EXPECT_EQ(v4->port, 50051);
  EXPECT_EQ(v4->ToString(), "127.0.0.1:50051");

  absl::StatusOr<HostPort> v6 = ParseHostPort("[::]:0");
  ASSERT_TRUE(v6.ok()) << v6.status();
  EXPECT_EQ(v6->host, "[::]");
  EXPECT_EQ(v6->port, 0);

  absl::StatusOr<HostPort> name = ParseHostPort("decode-0.pdserve.svc:65535");
  ASSERT_TRUE(name.ok()) << name.status();
  EXPECT_EQ(name->host, "decode-0.pdserve.svc");
  EXPECT_EQ(name->port, 65535);
}

TEST(ParseHostPortTest, RejectsWhatIsNotHostAndPort) {
  for (const std::string bad : {"", "localhost", ":80", "host:", "host:65536", "host:-1",
                                "host:80x", "host: 80", "host:123456"}) {
    absl::StatusOr<HostPort> parsed = ParseHostPort(bad);
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument) << "'" << bad << "'";
    if (!parsed.ok()) {
      EXPECT_NE(parsed.status().message().find("HOST:PORT"), std::string::npos);
    }
  }
}

TEST(IsWildcardHostTest, KnowsTheAnyAddresses) {
  EXPECT_TRUE(IsWildcardHost("0.0.0.0"));
  EXPECT_TRUE(IsWildcardHost("::"));
  EXPECT_TRUE(IsWildcardHost("[::]"));
  EXPECT_FALSE(IsWildcardHost("127.0.0.1"));
  EXPECT_FALSE(IsWildcardHost("localhost"));
}

// grpc.health.v1.Health/Check for the whole server (empty service name), by hand: the answer's
// field 1 is the status (1 = SERVING, 2 = NOT_SERVING). Returns the call's status and sets *bytes.
grpc::Status CheckHealth(const std::string& address, std::string* bytes) {
  auto channel = grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
  grpc::GenericStub stub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  grpc::Slice empty;
  grpc::ByteBuffer request(&empty, 1);
  grpc::ByteBuffer response;
  std::promise<grpc::Status> done;
  stub.UnaryCall(&context, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request,
                 &response, [&done](grpc::Status s) { done.set_value(s); });
  grpc::Status status = done.get_future().get();
  bytes->clear();
  std::vector<grpc::Slice> slices;
  if (status.ok() && response.Dump(&slices).ok()) {
    for (const grpc::Slice& s : slices) {
      bytes->append(reinterpret_cast<const char*>(s.begin()), s.size());
    }
  }
  return status;
}

TEST(ShutdownSignalsTest, WaitEndsWhenThePollSaysSo) {
  const ShutdownSignals signals;
  int polls = 0;
  EXPECT_EQ(signals.Wait([&] { return ++polls == 3; }), 0);  // no signal: 0
  EXPECT_EQ(polls, 3);
}

TEST(ServingServerTest, ServesHealthUntilShutdown) {
  absl::StatusOr<std::unique_ptr<ServingServer>> server =
      ServingServer::Start({.listen = "127.0.0.1:0"}, {});
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_EQ((*server)->bound().host, "127.0.0.1");
  EXPECT_GT((*server)->bound().port, 0);
  EXPECT_EQ((*server)->LocalAddress(), (*server)->bound().ToString());

  std::string answer;
  grpc::Status status = CheckHealth((*server)->LocalAddress(), &answer);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(answer, std::string("\x08\x01", 2));  // SERVING

  (*server)->Shutdown(std::chrono::milliseconds(100));
  (*server)->Shutdown(std::chrono::milliseconds(100));  // idempotent
  (*server)->Wait();
  EXPECT_FALSE(CheckHealth((*server)->LocalAddress(), &answer).ok());
}

TEST(ServingServerTest, AWildcardListenIsCalledOnLoopback) {
  absl::StatusOr<std::unique_ptr<ServingServer>> server =
      ServingServer::Start({.listen = "0.0.0.0:0"}, {});
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_EQ((*server)->bound().host, "0.0.0.0");
  EXPECT_EQ((*server)->LocalAddress(),
            "127.0.0.1:" + std::to_string((*server)->bound().port));
  std::string answer;
  EXPECT_TRUE(CheckHealth((*server)->LocalAddress(), &answer).ok());
}

TEST(ServingServerTest, ABadOrTakenAddressIsAnError) {
  absl::StatusOr<std::unique_ptr<ServingServer>> bad =
      ServingServer::Start({.listen = "no-port"}, {});
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);

  absl::StatusOr<std::unique_ptr<ServingServer>> first =
      ServingServer::Start({.listen = "127.0.0.1:0"}, {});
  ASSERT_TRUE(first.ok()) << first.status();
  absl::StatusOr<std::unique_ptr<ServingServer>> second =
      ServingServer::Start({.listen = (*first)->bound().ToString()}, {});
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(second.status().message().find((*first)->bound().ToString()), std::string::npos);
}

}  // namespace
}  // namespace pdserve::rpc
