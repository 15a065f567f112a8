// The HTTP server over real sockets on 127.0.0.1: whole and streamed responses, keep-alive, the
// connection limit, a client that leaves mid-stream, the server's own errors, and exchanges that
// outlive the server.

#include "common/http/http_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "boost/asio.hpp"
#include "boost/asio/ssl.hpp"
#include "tests/common/rpc/test_certs.h"

namespace pdserve::http {
namespace {

// A blocking client connection with a receive timeout, so that a broken server fails the test
// instead of hanging it.
class RawClient {
 public:
  explicit RawClient(int port) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<uint16_t>(port));
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = connect(fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0;
    timeval timeout{.tv_sec = 10, .tv_usec = 0};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  }
  ~RawClient() { Close(); }
  bool connected() const { return connected_; }

  void Send(const std::string& bytes) {
    size_t sent = 0;
    while (sent < bytes.size()) {
      const ssize_t n = send(fd_, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) return;
      sent += static_cast<size_t>(n);
    }
  }
  // Everything until the server closes (or the timeout).
  std::string ReadAll() {
    std::string out;
    char buffer[4096];
    for (;;) {
      const ssize_t n = recv(fd_, buffer, sizeof(buffer), 0);
      if (n <= 0) return out;
      out.append(buffer, static_cast<size_t>(n));
    }
  }
  // One response with a Content-Length body (keep-alive).
  std::string ReadResponse() {
    std::string out;
    char buffer[4096];
    for (;;) {
      const size_t header_end = out.find("\r\n\r\n");
      if (header_end != std::string::npos) {
        const size_t at = out.find("Content-Length: ");
        size_t length = 0;
        if (at != std::string::npos) {
          const size_t end = out.find("\r\n", at);
          (void)absl::SimpleAtoi(out.substr(at + 16, end - at - 16), &length);
        }
        if (out.size() >= header_end + 4 + length) return out;
      }
      const ssize_t n = recv(fd_, buffer, sizeof(buffer), 0);
      if (n <= 0) return out;
      out.append(buffer, static_cast<size_t>(n));
    }
  }
  void Close() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
  bool connected_ = false;
};

std::string Get(const std::string& path, bool keep_alive = true) {
  return absl::StrCat("GET ", path, " HTTP/1.1\r\nHost: x\r\n",
                      keep_alive ? "" : "Connection: close\r\n", "\r\n");
}

std::string Post(const std::string& path, const std::string& body) {
  return absl::StrCat("POST ", path, " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n",
                      "Content-Type: application/json\r\nContent-Length: ", body.size(), "\r\n\r\n",
                      body);
}

int StatusOf(const std::string& response) {
  int status = 0;
  if (response.size() > 12) (void)absl::SimpleAtoi(response.substr(9, 3), &status);
  return status;
}

std::string BodyOf(const std::string& response) {
  const size_t at = response.find("\r\n\r\n");
  return at == std::string::npos ? "" : response.substr(at + 4);
}

// The data of a chunked body.
std::string Dechunk(const std::string& body) {
  std::string out;
  size_t at = 0;
  for (;;) {
    const size_t line_end = body.find("\r\n", at);
    if (line_end == std::string::npos) return out + "<truncated>";
    size_t size = 0;
    if (!absl::SimpleHexAtoi(body.substr(at, line_end - at), &size)) return out + "<bad size>";
    if (size == 0) return out;
    out += body.substr(line_end + 2, size);
    at = line_end + 2 + size + 2;
  }
}

std::unique_ptr<HttpServer> StartServer(HttpHandler handler, HttpServerOptions options = {}) {
  absl::StatusOr<std::unique_ptr<HttpServer>> server =
      HttpServer::Start(std::move(options), std::move(handler));
  EXPECT_TRUE(server.ok()) << server.status();
  return server.ok() ? *std::move(server) : nullptr;
}

void Echo(std::shared_ptr<HttpExchange> exchange) {
  const HttpRequest& r = exchange->request();
  exchange->Respond(TextResponse(
      200, absl::StrCat(r.method, " ", r.path, "?", r.query, " ", r.body, " ",
                        r.Header("x-thing").value_or("-"))));
}

TEST(HttpServerTest, AnswersAndKeepsTheConnectionForTheNextRequest) {
  auto server = StartServer(Echo);
  ASSERT_NE(server, nullptr);
  RawClient client(server->port());
  ASSERT_TRUE(client.connected());
  client.Send("GET /a?b=1 HTTP/1.1\r\nHost: x\r\nX-Thing: yes\r\n\r\n");
  std::string first = client.ReadResponse();
  EXPECT_EQ(StatusOf(first), 200) << first;
  EXPECT_EQ(BodyOf(first), "GET /a?b=1  yes");
  client.Send(Post("/second", "{\"k\":1}"));
  std::string second = client.ReadAll();
  EXPECT_EQ(StatusOf(second), 200) << second;
  EXPECT_EQ(BodyOf(second), "POST /second? {\"k\":1} -");
}

TEST(HttpServerTest, StreamsChunksInOrderAndEndsTheStream) {
  auto server = StartServer([](std::shared_ptr<HttpExchange> exchange) {
    exchange->StartStream(200, "text/event-stream", {{"Cache-Control", "no-cache"}});
    // Each write is issued once the one before it is done, as the contract asks.
    exchange->Write("data: one\n\n", [exchange](bool ok) {
      exchange->Write("data: two\n\n", [exchange](bool ok) { exchange->EndStream(); });
    });
  });
  ASSERT_NE(server, nullptr);
  RawClient client(server->port());
  client.Send(Get("/stream", /*keep_alive=*/false));
  const std::string response = client.ReadAll();
  EXPECT_EQ(StatusOf(response), 200) << response;
  EXPECT_NE(response.find("Transfer-Encoding: chunked"), std::string::npos) << response;
  EXPECT_NE(response.find("Content-Type: text/event-stream"), std::string::npos) << response;
  EXPECT_EQ(Dechunk(BodyOf(response)), "data: one\n\ndata: two\n\n");
}

TEST(HttpServerTest, AConnectionPastTheLimitIsAnswered429AndClosed) {
  absl::Mutex mu;
  std::vector<std::shared_ptr<HttpExchange>> held;  // requests left unanswered
  auto server = StartServer(
      [&](std::shared_ptr<HttpExchange> exchange) {
        absl::MutexLock lock(&mu);
        held.push_back(std::move(exchange));
      },
      {.max_connections = 2});
  ASSERT_NE(server, nullptr);
  RawClient a(server->port()), b(server->port());
  a.Send(Get("/hold"));
  b.Send(Get("/hold"));
  {
    absl::MutexLock lock(&mu);
    ASSERT_TRUE(mu.AwaitWithTimeout(absl::Condition(
                                        +[](std::vector<std::shared_ptr<HttpExchange>>* h) {
                                          return h->size() == 2;
                                        },
                                        &held),
                                    absl::Seconds(10)));
  }
  EXPECT_EQ(server->open_connections(), 2);
  RawClient c(server->port());
  c.Send(Get("/hold"));
  const std::string refused = c.ReadAll();
  EXPECT_EQ(StatusOf(refused), 429) << refused;
  EXPECT_NE(BodyOf(refused).find("\"error\""), std::string::npos) << refused;
  EXPECT_NE(BodyOf(refused).find("rate_limit_error"), std::string::npos) << refused;

  // Freed slots serve again.
  {
    absl::MutexLock lock(&mu);
    for (auto& exchange : held) exchange->Respond(TextResponse(200, "done"));
    held.clear();
  }
  EXPECT_EQ(BodyOf(a.ReadResponse()), "done");
  a.Close();
  b.Close();
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (server->open_connections() > 0 && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(10));
  RawClient d(server->port());
  d.Send(Get("/hold", /*keep_alive=*/false));
  absl::SleepFor(absl::Milliseconds(100));
  {
    absl::MutexLock lock(&mu);
    ASSERT_EQ(held.size(), 1u);
    held[0]->Respond(TextResponse(200, "again"));
    held.clear();
  }
  EXPECT_EQ(BodyOf(d.ReadAll()), "again");
}

TEST(HttpServerTest, AClientThatLeavesMidStreamFiresTheCallbackAndFailsWrites) {
  absl::Notification gone;
  std::shared_ptr<HttpExchange> exchange;
  absl::Notification started;
  auto server = StartServer([&](std::shared_ptr<HttpExchange> e) {
    exchange = e;
    e->SetClientGoneCallback([&gone] { gone.Notify(); });
    e->StartStream(200, "text/event-stream");
    e->Write("data: first\n\n", [&started](bool ok) { started.Notify(); });
  });
  ASSERT_NE(server, nullptr);
  {
    RawClient client(server->port());
    client.Send(Get("/stream"));
    ASSERT_TRUE(started.WaitForNotificationWithTimeout(absl::Seconds(10)));
  }  // closes the connection
  ASSERT_TRUE(gone.WaitForNotificationWithTimeout(absl::Seconds(10)));
  absl::Notification write_failed;
  exchange->Write("data: late\n\n", [&](bool ok) {
    if (!ok) write_failed.Notify();
  });
  EXPECT_TRUE(write_failed.WaitForNotificationWithTimeout(absl::Seconds(10)));
}

TEST(HttpServerTest, ItsOwnErrorsAreJsonWithTheRightStatus) {
  auto server = StartServer(Echo, {.max_body_bytes = 100, .idle_timeout = absl::Milliseconds(300)});
  ASSERT_NE(server, nullptr);
  {
    RawClient client(server->port());
    client.Send(Post("/big", std::string(1000, 'x')));
    const std::string response = client.ReadAll();
    EXPECT_EQ(StatusOf(response), 413) << response;
    EXPECT_NE(BodyOf(response).find("100 bytes"), std::string::npos) << response;
  }
  {
    RawClient client(server->port());
    client.Send("NOT HTTP AT ALL\r\n\r\n");
    const std::string response = client.ReadAll();
    EXPECT_EQ(StatusOf(response), 400) << response;
    EXPECT_NE(BodyOf(response).find("\"error\""), std::string::npos) << response;
  }
  {
    RawClient client(server->port());
    client.Send("GET /slow HTTP/1.1\r\nHost: x\r\n");  // and never the rest
    const std::string response = client.ReadAll();
    EXPECT_EQ(StatusOf(response), 408) << response;
  }
  {
    RawClient client(server->port());  // says nothing: closed without a word
    EXPECT_EQ(client.ReadAll(), "");
  }
}

TEST(HttpServerTest, AnExchangeDroppedUnansweredGets500) {
  auto server = StartServer([](std::shared_ptr<HttpExchange> exchange) {});
  ASSERT_NE(server, nullptr);
  RawClient client(server->port());
  client.Send(Get("/", /*keep_alive=*/false));
  const std::string response = client.ReadAll();
  EXPECT_EQ(StatusOf(response), 500) << response;
  EXPECT_NE(BodyOf(response).find("without an answer"), std::string::npos) << response;
}

TEST(HttpServerTest, AnExchangeThatOutlivesTheServerFailsItsWritesAtOnce) {
  std::shared_ptr<HttpExchange> kept;
  absl::Notification have;
  auto server = StartServer([&](std::shared_ptr<HttpExchange> exchange) {
    kept = exchange;
    have.Notify();
  });
  ASSERT_NE(server, nullptr);
  RawClient client(server->port());
  client.Send(Get("/"));
  ASSERT_TRUE(have.WaitForNotificationWithTimeout(absl::Seconds(10)));
  server.reset();
  bool done = false, result = true;
  kept->Write("late", [&](bool ok) {
    done = true;
    result = ok;
  });
  EXPECT_TRUE(done);
  EXPECT_FALSE(result);
  kept->Respond(TextResponse(200, "ignored"));
  kept.reset();
}

// One request over TLS that trusts only `ca_pem` (and checks the server's name); the whole
// response, or the error that stopped it.
std::string HttpsGet(int port, const std::string& ca_pem, const std::string& path) {
  namespace net = boost::asio;
  net::io_context ioc;
  net::ssl::context context(net::ssl::context::tls_client);
  boost::system::error_code ec;
  context.add_certificate_authority(net::buffer(ca_pem), ec);
  if (ec) return "CA: " + ec.message();
  context.set_verify_mode(net::ssl::verify_peer);
  net::ssl::stream<net::ip::tcp::socket> stream(ioc, context);
  SSL_set_tlsext_host_name(stream.native_handle(), "localhost");
  stream.set_verify_callback(net::ssl::host_name_verification("localhost"));
  stream.next_layer().connect({net::ip::make_address("127.0.0.1"), static_cast<unsigned short>(port)}, ec);
  if (!ec) stream.handshake(net::ssl::stream_base::client, ec);
  if (ec) return "handshake: " + ec.message();
  net::write(stream, net::buffer(Get(path, /*keep_alive=*/false)), ec);
  std::string response;
  char buffer[4096];
  for (;;) {
    const size_t n = stream.read_some(net::buffer(buffer), ec);
    response.append(buffer, n);
    if (ec) return response;
  }
}

TEST(HttpServerTest, ServesHttpsWithTheGivenCertificateAndRefusesPlaintext) {
  absl::StatusOr<rpc::testing::TestCerts> certs = rpc::testing::MakeTestCerts();
  ASSERT_TRUE(certs.ok()) << certs.status();
  auto server = StartServer(Echo, {.tls_cert_pem = rpc::testing::ReadText(certs->node_pem),
                                   .tls_key_pem = rpc::testing::ReadText(certs->node_key)});
  ASSERT_NE(server, nullptr);
  const std::string response = HttpsGet(server->port(), rpc::testing::ReadText(certs->ca_pem), "/tls");
  EXPECT_EQ(StatusOf(response), 200) << response;
  EXPECT_EQ(BodyOf(response), "GET /tls?  -");
  // A client of another CA does not trust it.
  EXPECT_NE(StatusOf(HttpsGet(server->port(), rpc::testing::ReadText(certs->stranger_ca_pem), "/")), 200);
  // Plaintext HTTP to the HTTPS port gets no HTTP answer.
  RawClient plain(server->port());
  plain.Send(Get("/", /*keep_alive=*/false));
  EXPECT_EQ(plain.ReadAll().rfind("HTTP/", 0), std::string::npos);
  // A certificate without its key is refused at start.
  EXPECT_EQ(HttpServer::Start({.tls_cert_pem = rpc::testing::ReadText(certs->node_pem)}, Echo)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(HttpServer::Start({.tls_cert_pem = rpc::testing::ReadText(certs->node_pem),
                               .tls_key_pem = rpc::testing::ReadText(certs->stranger_key)},
                              Echo)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(HttpServerTest, BadListenAddressesAreInvalidArgument) {
  for (const char* listen : {"nonsense", "127.0.0.1:99999", "not-an-ip:80"}) {
    absl::StatusOr<std::unique_ptr<HttpServer>> server =
        HttpServer::Start({.listen = listen}, Echo);
    EXPECT_EQ(server.status().code(), absl::StatusCode::kInvalidArgument) << listen;
  }
}

}  // namespace
}  // namespace pdserve::http
