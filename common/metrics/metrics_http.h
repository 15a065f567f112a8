#pragma once
// GET /metrics over HTTP: the answer to a Prometheus scrape, and the small server a worker runs
// on its --metrics-port to give it. The router serves /metrics on its own HTTP front instead
// (MetricsResponse there).

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/http/http_server.h"

namespace pdserve::metrics {

// The Content-Type of a /metrics answer: the text exposition format 0.0.4, which
// prometheus::TextSerializer writes.
inline constexpr char kTextContentType[] = "text/plain; version=0.0.4; charset=utf-8";

// 200 with `text` (ScrapeRegistry::RenderText) as the text exposition format 0.0.4.
http::HttpResponse MetricsResponse(std::string text);

// Answers GET /metrics with MetricsResponse(render()); 404 for another path, 405 (Allow: GET)
// for another method on /metrics. `render` runs on an I/O thread: it must not block (a
// ScrapeRegistry's render takes only short locks).
http::HttpHandler MetricsHandler(std::function<std::string()> render);

// An HTTP server on `listen` (HOST:PORT; port 0 picks one) with MetricsHandler: a handful of
// connections (scrapers), idle ones closed after a minute; HTTPS with `tls_cert_pem` and
// `tls_key_pem` when both are given (a TLS cluster's every port is TLS). InvalidArgument /
// Unavailable as http::HttpServer::Start.
absl::StatusOr<std::unique_ptr<http::HttpServer>> StartMetricsServer(
    const std::string& listen, std::function<std::string()> render,
    std::string tls_cert_pem = "", std::string tls_key_pem = "");

}  // namespace pdserve::metrics
