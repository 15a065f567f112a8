#include "common/metrics/metrics_http.h"

#include <utility>

namespace pdserve::metrics {

http::HttpResponse MetricsResponse(std::string text) {
  return http::TextResponse(200, std::move(text), kTextContentType);
}

http::HttpHandler MetricsHandler(std::function<std::string()> render) {
  return [render = std::move(render)](std::shared_ptr<http::HttpExchange> exchange) {
    const http::HttpRequest& request = exchange->request();
    if (request.path != "/metrics") {
      exchange->Respond(http::TextResponse(404, "not found: this port serves GET /metrics\n"));
      return;
    }
    if (request.method != "GET") {
      http::HttpResponse response = http::TextResponse(405, "/metrics answers GET only\n");
      response.headers.emplace_back("Allow", "GET");
      exchange->Respond(std::move(response));
      return;
    }
    exchange->Respond(MetricsResponse(render()));
  };
}

absl::StatusOr<std::unique_ptr<http::HttpServer>> StartMetricsServer(
    const std::string& listen, std::function<std::string()> render, std::string tls_cert_pem,
    std::string tls_key_pem) {
  http::HttpServerOptions options;
  options.listen = listen;
  options.max_connections = 16;
  options.io_threads = 1;
  options.tls_cert_pem = std::move(tls_cert_pem);
  options.tls_key_pem = std::move(tls_key_pem);
  return http::HttpServer::Start(std::move(options), MetricsHandler(std::move(render)));
}

}  // namespace pdserve::metrics
