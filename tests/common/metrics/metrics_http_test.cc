// GET /metrics over a real socket: the registry's text with the format's content type, 404 and
// 405 for anything else.

#include "common/metrics/metrics_http.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/metrics/scrape_registry.h"
#include "prometheus/counter.h"

namespace pdserve::metrics {
namespace {

// Sends one request with "Connection: close" and returns everything the server wrote.
std::string RoundTrip(int port, const std::string& method, const std::string& path) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  EXPECT_GE(fd, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    close(fd);
    ADD_FAILURE() << "cannot connect to port " << port;
    return "";
  }
  const std::string request =
      absl::StrCat(method, " ", path, " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(send(fd, request.data(), request.size(), 0), static_cast<ssize_t>(request.size()));
  std::string response;
  char buffer[4096];
  ssize_t n;
  while ((n = recv(fd, buffer, sizeof(buffer), 0)) > 0) response.append(buffer, n);
  close(fd);
  return response;
}

class MetricsHttpTest : public ::testing::Test {
 protected:
  void SetUp() override {
    prometheus::BuildCounter()
        .Name("pdserve_test_total")
        .Help("A test counter.")
        .Register(metrics_.registry())
        .Add({})
        .Increment(5);
    absl::StatusOr<std::unique_ptr<http::HttpServer>> server =
        StartMetricsServer("127.0.0.1:0", [this] { return metrics_.RenderText(); });
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
  }

  ScrapeRegistry metrics_;
  std::unique_ptr<http::HttpServer> server_;
};

TEST_F(MetricsHttpTest, GetMetricsAnswersTheRegistrysText) {
  const std::string response = RoundTrip(server_->port(), "GET", "/metrics");
  EXPECT_EQ(response.rfind("HTTP/1.1 200", 0), 0u) << response;
  EXPECT_NE(absl::AsciiStrToLower(response).find(
                absl::StrCat("content-type: ", kTextContentType)),
            std::string::npos)
      << response;
  EXPECT_NE(response.find("\r\n\r\n" + metrics_.RenderText()), std::string::npos) << response;
  EXPECT_NE(response.find("pdserve_test_total 5\n"), std::string::npos);
}

TEST_F(MetricsHttpTest, OtherPathsAre404AndOtherMethods405) {
  EXPECT_EQ(RoundTrip(server_->port(), "GET", "/").rfind("HTTP/1.1 404", 0), 0u);
  EXPECT_EQ(RoundTrip(server_->port(), "GET", "/v1/models").rfind("HTTP/1.1 404", 0), 0u);
  const std::string post = RoundTrip(server_->port(), "POST", "/metrics");
  EXPECT_EQ(post.rfind("HTTP/1.1 405", 0), 0u) << post;
  EXPECT_NE(absl::AsciiStrToLower(post).find("allow: get"), std::string::npos) << post;
}

TEST(MetricsServerTest, ABadListenAddressIsAnError) {
  absl::StatusOr<std::unique_ptr<http::HttpServer>> server =
      StartMetricsServer("not-an-address", [] { return std::string(); });
  EXPECT_FALSE(server.ok());
}

}  // namespace
}  // namespace pdserve::metrics
