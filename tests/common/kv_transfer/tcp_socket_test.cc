// The "tcp" transport's socket plumbing (common/kv_transfer/tcp/tcp_socket.h): endpoint
// parsing, and whole-buffer I/O over real loopback sockets that ends on every limit it takes.

#include "common/kv_transfer/tcp/tcp_socket.h"

#include <sys/socket.h>

#include <numeric>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace pdserve::kv_transfer {
namespace {

TEST(TcpEndpointTest, ParsesHostPortAndBarePort) {
  absl::StatusOr<HostPort> full = ParseTcpEndpoint("10.1.2.3:5000", "decode:50052");
  ASSERT_TRUE(full.ok()) << full.status();
  EXPECT_EQ(full->host, "10.1.2.3");
  EXPECT_EQ(full->port, 5000);

  absl::StatusOr<HostPort> bare = ParseTcpEndpoint(":6000", "decode-7.local:50052");
  ASSERT_TRUE(bare.ok()) << bare.status();
  EXPECT_EQ(bare->host, "decode-7.local");
  EXPECT_EQ(bare->port, 6000);

  absl::StatusOr<HostPort> v6 = ParseTcpEndpoint(":6000", "[fe80::1]:50052");
  ASSERT_TRUE(v6.ok()) << v6.status();
  EXPECT_EQ(v6->host, "fe80::1");
  EXPECT_EQ(JoinHostPort(*v6), "[fe80::1]:6000");
  EXPECT_EQ(JoinHostPort(*full), "10.1.2.3:5000");
}

TEST(TcpEndpointTest, RefusesMalformedEndpoints) {
  for (const char* endpoint : {"", "host", "host:", "host:0", "host:65536", "host:http", ":-1"}) {
    EXPECT_FALSE(IsTcpEndpoint(endpoint)) << endpoint;
    const absl::Status s = ParseTcpEndpoint(endpoint, "decode:50052").status();
    EXPECT_TRUE(absl::IsInvalidArgument(s)) << endpoint;
    EXPECT_NE(s.message().find("tcp KV endpoint"), absl::string_view::npos) << s;
  }
  EXPECT_TRUE(IsTcpEndpoint(":1"));
  // ":port" needs a host in the control address.
  EXPECT_TRUE(absl::IsInvalidArgument(ParseTcpEndpoint(":5000", "").status()));
}

// A connected loopback pair: a listener, a client and the accepted end.
struct Pair {
  Fd client;
  Fd server;
};

Pair Connect() {
  absl::StatusOr<Fd> listener = ListenTcp("127.0.0.1", 0);
  EXPECT_TRUE(listener.ok()) << listener.status();
  absl::StatusOr<int> port = BoundPort(listener->get());
  EXPECT_TRUE(port.ok());
  absl::StatusOr<Fd> client = ConnectTcp({"127.0.0.1", *port}, {});
  EXPECT_TRUE(client.ok()) << client.status();
  EXPECT_TRUE(WaitReadable(listener->get(), {.silence = absl::Seconds(5)}).ok());
  Fd server(accept4(listener->get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
  EXPECT_TRUE(server.valid());
  return {*std::move(client), std::move(server)};
}

TEST(TcpIoTest, LargeGatheredWritesArriveWhole) {
  Pair pair = Connect();
  // Far more than the socket buffers: writes are partial and must resume mid-entry.
  std::vector<std::vector<uint8_t>> pieces(5, std::vector<uint8_t>(3 << 20));
  for (size_t p = 0; p < pieces.size(); ++p) {
    for (size_t i = 0; i < pieces[p].size(); ++i) pieces[p][i] = static_cast<uint8_t>(i * 7 + p);
  }
  std::thread writer([&] {
    std::vector<iovec> iov;
    for (auto& piece : pieces) iov.push_back({piece.data(), piece.size()});
    EXPECT_TRUE(WriteAll(pair.client.get(), absl::MakeSpan(iov),
                         {.deadline = absl::Now() + absl::Seconds(30)})
                    .ok());
  });
  // Read into differently sized pieces: readv must resume mid-entry too.
  std::vector<uint8_t> a(1 << 20), b(14 << 20);  // the 15 MiB sent
  std::vector<iovec> iov = {{a.data(), a.size()}, {b.data(), b.size()}};
  size_t n_read = 0;
  EXPECT_TRUE(
      ReadAll(pair.server.get(), absl::MakeSpan(iov), {.silence = absl::Seconds(30)}, &n_read)
          .ok());
  writer.join();
  EXPECT_EQ(n_read, a.size() + b.size());
  std::vector<uint8_t> sent, got;
  for (auto& piece : pieces) sent.insert(sent.end(), piece.begin(), piece.end());
  got.insert(got.end(), a.begin(), a.end());
  got.insert(got.end(), b.begin(), b.end());
  EXPECT_TRUE(sent == got);
}

TEST(TcpIoTest, PeerClosingEarlyIsUnavailableWithTheCount) {
  Pair pair = Connect();
  const std::vector<uint8_t> some(100, 1);
  ASSERT_TRUE(WriteAll(pair.client.get(), absl::MakeConstSpan(some), {}).ok());
  pair.client.Close();
  std::vector<uint8_t> buffer(1000);
  size_t n_read = 0;
  const absl::Status s =
      ReadAll(pair.server.get(), absl::MakeSpan(buffer), {.silence = absl::Seconds(5)}, &n_read);
  EXPECT_TRUE(absl::IsUnavailable(s)) << s;
  EXPECT_EQ(n_read, 100u);
  EXPECT_NE(s.message().find("100 of 1000"), absl::string_view::npos) << s;
}

TEST(TcpIoTest, SilenceAndDeadlineEndAReadInTime) {
  Pair pair = Connect();
  std::vector<uint8_t> buffer(10);
  absl::Time start = absl::Now();
  absl::Status s =
      ReadAll(pair.server.get(), absl::MakeSpan(buffer), {.silence = absl::Milliseconds(100)});
  EXPECT_TRUE(absl::IsDeadlineExceeded(s)) << s;
  EXPECT_LT(absl::Now() - start, absl::Seconds(3));
  start = absl::Now();
  s = ReadAll(pair.server.get(), absl::MakeSpan(buffer),
              {.deadline = absl::Now() + absl::Milliseconds(100)});
  EXPECT_TRUE(absl::IsDeadlineExceeded(s)) << s;
  EXPECT_LT(absl::Now() - start, absl::Seconds(3));
}

TEST(TcpIoTest, WakeDescriptorCancelsAWait) {
  Pair pair = Connect();
  WakeFd wake;
  ASSERT_TRUE(wake.valid());
  std::thread stopper([&] {
    absl::SleepFor(absl::Milliseconds(50));
    wake.Signal();
  });
  std::vector<uint8_t> buffer(10);
  const absl::Status s =
      ReadAll(pair.server.get(), absl::MakeSpan(buffer), {.wake_fd = wake.get()});
  stopper.join();
  EXPECT_TRUE(absl::IsCancelled(s)) << s;
  // Once signalled it stays signalled.
  EXPECT_TRUE(absl::IsCancelled(WaitReadable(pair.server.get(), {.wake_fd = wake.get()})));
}

TEST(TcpIoTest, ReadableNowDoesNotWait) {
  Pair pair = Connect();
  EXPECT_FALSE(ReadableNow(pair.server.get()));
  const uint8_t byte = 7;
  ASSERT_TRUE(WriteAll(pair.client.get(), absl::MakeConstSpan(&byte, 1), {}).ok());
  EXPECT_TRUE(WaitReadable(pair.server.get(), {.silence = absl::Seconds(5)}).ok());
  EXPECT_TRUE(ReadableNow(pair.server.get()));
}

TEST(TcpConnectTest, NobodyListeningIsUnavailableNamingTheAddress) {
  // A port that was just free: bind one, learn it, close it.
  int port = 0;
  {
    absl::StatusOr<Fd> listener = ListenTcp("127.0.0.1", 0);
    ASSERT_TRUE(listener.ok());
    port = *BoundPort(listener->get());
  }
  const absl::Status s =
      ConnectTcp({"127.0.0.1", port}, {.deadline = absl::Now() + absl::Seconds(5)}).status();
  EXPECT_TRUE(absl::IsUnavailable(s)) << s;
  EXPECT_NE(s.message().find(absl::StrCat("127.0.0.1:", port)), absl::string_view::npos) << s;
}

TEST(TcpConnectTest, ListenRefusesABadPort) {
  EXPECT_TRUE(absl::IsInvalidArgument(ListenTcp("127.0.0.1", 70000).status()));
}

}  // namespace
}  // namespace pdserve::kv_transfer
