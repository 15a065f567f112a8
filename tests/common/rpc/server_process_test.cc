#include "common/rpc/server_process.h"

#include <pthread.h>
#include <signal.h>

#include <chrono>
#include <memory>
#include <string>

#include "gtest/gtest.h"
#include "tests/support/health_check.h"

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

using test_support::CheckHealth;

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

TEST(ServingServerTest, NotServingIsReportedWhileCallsAreStillTaken) {
  absl::StatusOr<std::unique_ptr<ServingServer>> server =
      ServingServer::Start({.listen = "127.0.0.1:0"}, {});
  ASSERT_TRUE(server.ok()) << server.status();
  (*server)->ReportNotServing();
  std::string answer;
  grpc::Status status = CheckHealth((*server)->LocalAddress(), &answer);
  ASSERT_TRUE(status.ok()) << status.error_message();  // the call is taken ...
  EXPECT_EQ(answer, std::string("\x08\x02", 2));       // ... and answers NOT_SERVING
}

TEST(WaitUntilDrainedTest, IdleAtOnceReturnsWithoutWaiting) {
  const ShutdownSignals signals;
  int checks = 0;
  const absl::Time start = absl::Now();
  const auto idle = [&checks] {
    ++checks;
    return int64_t{0};
  };
  EXPECT_EQ(WaitUntilDrained(signals, idle, absl::Seconds(10)), DrainEnd::kIdle);
  EXPECT_EQ(checks, 1);
  EXPECT_LT(absl::Now() - start, absl::Milliseconds(50));
}

TEST(WaitUntilDrainedTest, ReturnsWhenTheLastWorkEnds) {
  const ShutdownSignals signals;
  int64_t in_flight = 3;
  EXPECT_EQ(WaitUntilDrained(signals, [&] { return in_flight--; }, absl::Seconds(10)),
            DrainEnd::kIdle);
  EXPECT_EQ(in_flight, -1);  // checked until it read 0
}

TEST(WaitUntilDrainedTest, GivesUpAfterTheTimeout) {
  const ShutdownSignals signals;
  const absl::Time start = absl::Now();
  EXPECT_EQ(WaitUntilDrained(signals, [] { return int64_t{1}; }, absl::Milliseconds(300)),
            DrainEnd::kTimedOut);
  const absl::Duration waited = absl::Now() - start;
  EXPECT_GE(waited, absl::Milliseconds(300));
  EXPECT_LT(waited, absl::Seconds(2));
  const absl::Time none = absl::Now();  // a timeout of 0: no drain at all
  EXPECT_EQ(WaitUntilDrained(signals, [] { return int64_t{1}; }, absl::ZeroDuration()),
            DrainEnd::kTimedOut);
  EXPECT_LT(absl::Now() - none, absl::Milliseconds(50));
}

TEST(WaitUntilDrainedTest, AnotherSignalEndsTheWaitAtOnce) {
  const ShutdownSignals signals;  // blocks SIGTERM in this thread: it stays pending here
  ASSERT_EQ(pthread_kill(pthread_self(), SIGTERM), 0);
  const absl::Time start = absl::Now();
  EXPECT_EQ(WaitUntilDrained(signals, [] { return int64_t{1}; }, absl::Seconds(30)),
            DrainEnd::kInterrupted);
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
  EXPECT_STREQ(DrainEndName(DrainEnd::kInterrupted), "interrupted");
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
