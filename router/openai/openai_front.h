#pragma once
// The router's OpenAI-compatible HTTP API (the handler of an http::HttpServer):
//   POST /v1/completions, POST /v1/chat/completions   through the same relay as gRPC Generate;
//                                                     "stream": true answers server-sent events
//                                                     ending in "data: [DONE]"
//   GET  /v1/models                                   the one served model
//   GET  /health                                      200 while a prefill and a decode worker
//                                                     are healthy, else 503
//   GET  /metrics                                     Prometheus text, when a renderer is given
// Errors are OpenAI's JSON error object with the HTTP status of openai::HttpStatusFor; one that
// happens after a stream began (its status line already sent) is a last event with the error
// object. The stream's status line waits for the first token, so that a refused request
// (bad input, the router's queue full, no worker) still gets its status code.
// With API keys configured, /v1/* needs "Authorization: Bearer <key>" (401 otherwise);
// /health and /metrics stay open, as probes and scrapers expect.

#include <functional>
#include <memory>
#include <string>

#include "common/http/http_server.h"
#include "common/rpc/call_authorization.h"
#include "router/relay.h"
#include "router/worker_registry.h"

namespace pdserve::router::openai {

struct OpenAiFrontOptions {
  // The model id clients name (and /v1/models lists); requests naming another get 404.
  std::string served_model_name;
  int64_t context_length = 0;
  rpc::SecurityPolicy security;  // its api_keys guard /v1/*
  // Renders /metrics; empty: 404 there.
  std::function<std::string()> render_metrics;
};

class OpenAiFront {
 public:
  // `relay` and `registry` outlive the front and every exchange it handles.
  OpenAiFront(Relay& relay, const WorkerRegistry& registry, OpenAiFrontOptions options);

  // The http::HttpHandler.
  void Handle(std::shared_ptr<http::HttpExchange> exchange);

 private:
  void Generate(std::shared_ptr<http::HttpExchange> exchange, bool chat);
  http::HttpResponse Health() const;

  Relay& relay_;
  const WorkerRegistry& registry_;
  const OpenAiFrontOptions options_;
  const int64_t created_;  // Unix seconds the front started: the model's "created"
};

// The model id by default: the model file's name without its directory and last extension.
std::string DefaultServedModelName(const std::string& model_path);

}  // namespace pdserve::router::openai
