#pragma once
// An HTTP/1.1 server for the router's OpenAI-compatible API and every process's /metrics, on
// Boost.Beast (asynchronous: no thread per connection or per stream).
//
// Contract:
//   - A handler runs on one of the server's I/O threads for each request and must not block;
//     it answers through the HttpExchange it is given, now or later, from any thread.
//   - Each exchange ends with exactly one Respond, or with StartStream, Writes (one outstanding
//     at a time) and EndStream. An exchange dropped without either is answered 500.
//   - At most `max_connections` connections are served at once; one past that is answered 429
//     (an OpenAI-shaped JSON error) and closed, so the server never queues without bound.
//   - A connection must deliver each whole request (header and body) within `idle_timeout` of
//     opening or of its previous exchange's end: it is then closed, with 408 when part of a
//     request had come. Bodies over `max_body_bytes` get 413; requests that do not parse get 400
//     (and the connection closes). Keep-alive is honoured between exchanges.
//   - The server must outlive no exchange: an exchange used after the server is destroyed does
//     nothing (a Write completes not ok at once, on the caller's thread).
//   - While a response streams, the server watches the connection: a client that closes it (or
//     resets it) fires the exchange's client-gone callback once, and later Writes complete
//     not ok.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace pdserve::http {

struct HttpRequest {
  std::string method;  // "GET", "POST", ...
  std::string path;    // the target up to '?', e.g. "/v1/completions"
  std::string query;   // after '?', possibly empty
  // Header names in lower case; a repeated header keeps its last value.
  std::map<std::string, std::string> headers;
  std::string body;
  std::string peer;  // "IP:PORT" of the client's connection

  // The header's value, or nullopt when absent. `name` in lower case.
  std::optional<std::string> Header(absl::string_view name) const;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // extra headers
};

// One request and its answer. Thread-safe: every method may be called from any thread.
class HttpExchange {
 public:
  virtual ~HttpExchange() = default;
  virtual const HttpRequest& request() const = 0;

  // Answers with a whole response; ends the exchange.
  virtual void Respond(HttpResponse response) = 0;

  // Starts a streamed (chunked) response: `status`, content type and extra headers.
  virtual void StartStream(int status, std::string content_type,
                           std::vector<std::pair<std::string, std::string>> headers = {}) = 0;
  // Sends one chunk of a started stream; `on_done(ok)` runs once it is handed to the socket
  // (ok), or the connection failed or was closed (not ok). One Write at a time. `on_done` runs
  // on an I/O thread and must not block.
  virtual void Write(std::string data, std::function<void(bool ok)> on_done) = 0;
  // Ends a started stream (the terminating chunk); the connection then serves its next request.
  virtual void EndStream() = 0;

  // Closes the connection now: an outstanding Write completes not ok. For a client that stopped
  // reading.
  virtual void Abort() = 0;

  // `on_gone` runs once, on an I/O thread, if the client closes the connection before the
  // exchange ended (also at once when it already has). Set it before streaming.
  virtual void SetClientGoneCallback(std::function<void()> on_gone) = 0;
};

using HttpHandler = std::function<void(std::shared_ptr<HttpExchange> exchange)>;

struct HttpServerOptions {
  std::string listen = "127.0.0.1:0";  // HOST:PORT; port 0 picks one
  int max_connections = 256;
  size_t max_body_bytes = 8 << 20;
  absl::Duration idle_timeout = absl::Seconds(60);
  int io_threads = 2;
  // Both set (PEM): HTTPS, TLS 1.2 or later, with this certificate (chain) and key; both empty:
  // plaintext. A client that does not complete the TLS handshake is closed without an answer.
  std::string tls_cert_pem;
  std::string tls_key_pem;
};

class HttpServer {
 public:
  // Binds and starts serving; InvalidArgument for a bad listen address, Unavailable when it
  // cannot bind.
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(HttpServerOptions options,
                                                           HttpHandler handler);
  // Shuts down: stops accepting, closes every connection, joins the I/O threads.
  virtual ~HttpServer() = default;

  // "HOST:PORT" actually bound (the port resolved when 0 was asked).
  virtual std::string bound() const = 0;
  virtual int port() const = 0;
  // Connections open now (for tests and metrics).
  virtual int open_connections() const = 0;
};

// The common replies.
HttpResponse JsonResponse(int status, std::string json_body);
HttpResponse TextResponse(int status, std::string text,
                          std::string content_type = "text/plain; charset=utf-8");
// {"error": {"message": ..., "type": ..., "param": null, "code": null}}: OpenAI's error shape,
// which the server's own errors (400, 408, 413, 429, 500) use too.
HttpResponse ErrorResponse(int status, absl::string_view message, absl::string_view type);
// ErrorResponse's body.
std::string ErrorJson(absl::string_view message, absl::string_view type);
// The error type ErrorResponse gives the server's own errors of `status`.
absl::string_view ErrorTypeForStatus(int status);

}  // namespace pdserve::http
