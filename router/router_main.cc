// pdserve-router: the cluster's front door. Serves Router (the public API) and WorkerRegistry
// (workers register and heartbeat) on one port, with gRPC health checking and reflection.

#include <chrono>
#include <cstdio>
#include <memory>
#include <string>

#include "absl/time/clock.h"
#include "cli/arg_parser.h"
#include "cli/security_flags.h"
#include "common/http/http_server.h"
#include "common/rpc/server_process.h"
#include "common/rpc/channel_cache.h"
#include "router/grpc_worker_clients.h"
#include "router/openai/openai_front.h"
#include "router/registry_service.h"
#include "router/relay.h"
#include "router/router_metrics.h"
#include "router/router_model.h"
#include "router/router_service.h"
#include "router/router_stats.h"
#include "router/worker_registry.h"

namespace {

int Fail(const std::string& message) {
  std::fprintf(stderr, "pdserve-router: %s\n", message.c_str());
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace pdserve;
  const rpc::ShutdownSignals signals;  // before any thread starts

  cli::ArgParser parser;
  parser.AddString("listen", "HOST:PORT to serve on (port 0: pick one; default 127.0.0.1:0)");
  parser.AddString("model", "model file (GGUF, or a llama2.c .bin): its tokenizer, chat "
                            "template, context length and KV shape are read and its fingerprint "
                            "computed; workers with another model or KV shape are refused");
  parser.AddString("tokenizer", "tokenizer file for a llama2.c checkpoint (tok512.bin)");
  parser.AddString("heartbeat-timeout-ms",
                   "a worker silent this long is out of rotation (default 3000)");
  parser.AddString("heartbeat-interval-ms", "how often workers are told to heartbeat (default 1000)");
  parser.AddString("max-request-seconds",
                   "upper bound on one request's worker calls (default 600)");
  cli::AddSecurityFlags(parser, cli::SecurityRole::kRouter);
  parser.AddString("max-inflight-requests",
                   "requests served at once; more wait in the router's queue (default 512)");
  parser.AddString("max-queued-requests",
                   "requests waiting for a slot; more are refused with RESOURCE_EXHAUSTED "
                   "(default 2048)");
  parser.AddString("client-stall-timeout-ms",
                   "a client that reads none of its stream this long is dropped and its decode "
                   "sequence cancelled (default 30000)");
  parser.AddString("http-listen",
                   "HOST:PORT of the OpenAI-compatible HTTP API (/v1/completions, "
                   "/v1/chat/completions, /v1/models, /health, /metrics); port 0: pick one; "
                   "default: no HTTP API");
  parser.AddString("served-model-name",
                   "the model id of the HTTP API (default: the model file's name without its "
                   "extension)");
  parser.AddString("http-max-connections",
                   "HTTP connections served at once; one more is answered 429 (default 1024)");
  parser.AddBool("help", "show this help");
  if (absl::Status s = parser.Parse(argc, argv); !s.ok()) {
    std::fprintf(stderr, "%s\n%s", std::string(s.message()).c_str(),
                 parser.Usage("pdserve-router").c_str());
    return 2;
  }
  if (parser.GetBool("help")) {
    std::fprintf(stdout, "%s", parser.Usage("pdserve-router").c_str());
    return 0;
  }
  if (parser.GetString("model").empty()) return Fail("--model is required");
  absl::StatusOr<int64_t> timeout_ms = parser.GetInt("heartbeat-timeout-ms", 3000);
  if (!timeout_ms.ok()) return Fail(std::string(timeout_ms.status().message()));
  if (*timeout_ms < 1) return Fail("--heartbeat-timeout-ms must be >= 1");
  absl::StatusOr<int64_t> interval_ms = parser.GetInt("heartbeat-interval-ms", 1000);
  if (!interval_ms.ok()) return Fail(std::string(interval_ms.status().message()));
  if (*interval_ms < 1 || *interval_ms > 3600000) {
    return Fail("--heartbeat-interval-ms must be in [1, 3600000]");
  }
  absl::StatusOr<double> max_request_seconds = parser.GetDouble("max-request-seconds", 600);
  if (!max_request_seconds.ok()) return Fail(std::string(max_request_seconds.status().message()));
  if (!(*max_request_seconds > 0)) return Fail("--max-request-seconds must be > 0");

  absl::StatusOr<rpc::ClusterSecurity> security = cli::ClusterSecurityFromFlags(parser);
  if (!security.ok()) return Fail(std::string(security.status().message()));
  std::fprintf(stderr, "%s\n", security->Describe().c_str());

  absl::StatusOr<int64_t> max_in_flight = parser.GetInt("max-inflight-requests", 512);
  if (!max_in_flight.ok()) return Fail(std::string(max_in_flight.status().message()));
  if (*max_in_flight < 1 || *max_in_flight > 1000000) {
    return Fail("--max-inflight-requests must be in [1, 1000000]");
  }
  absl::StatusOr<int64_t> max_queued = parser.GetInt("max-queued-requests", 2048);
  if (!max_queued.ok()) return Fail(std::string(max_queued.status().message()));
  if (*max_queued < 0 || *max_queued > 1000000) {
    return Fail("--max-queued-requests must be in [0, 1000000]");
  }

  absl::StatusOr<int64_t> stall_ms = parser.GetInt("client-stall-timeout-ms", 30000);
  if (!stall_ms.ok()) return Fail(std::string(stall_ms.status().message()));
  if (*stall_ms < 1) return Fail("--client-stall-timeout-ms must be >= 1");

  absl::StatusOr<int64_t> http_max_connections = parser.GetInt("http-max-connections", 1024);
  if (!http_max_connections.ok()) return Fail(std::string(http_max_connections.status().message()));
  if (*http_max_connections < 1 || *http_max_connections > 100000) {
    return Fail("--http-max-connections must be in [1, 100000]");
  }

  absl::StatusOr<router::RouterModel> model =
      router::LoadRouterModel(parser.GetString("model"), parser.GetString("tokenizer"));
  if (!model.ok()) return Fail(std::string(model.status().message()));
  std::fprintf(stderr, "model %s: fingerprint %s, KV layers=%d kv_heads=%d head_dim=%d\n",
               model->identity.file_name.c_str(), model->identity.fingerprint.c_str(),
               model->identity.n_layers, model->identity.n_kv_heads, model->identity.head_dim);

  const router::Clock clock = [] { return absl::Now(); };
  router::WorkerRegistry registry(absl::Milliseconds(*timeout_ms), clock, model->identity);
  // Fed by the stats as requests finish; GET /metrics of the HTTP front renders it.
  router::RouterMetrics metrics(registry);
  router::RouterStats stats(clock, 10000, &metrics);
  router::RelayOptions options;
  options.max_request_time = absl::Seconds(*max_request_seconds);
  options.max_in_flight = static_cast<int>(*max_in_flight);
  options.max_queued = static_cast<int>(*max_queued);
  options.client_stall_timeout = absl::Milliseconds(*stall_ms);
  // Calls to workers present the cluster's credentials (mutual TLS, the cluster secret).
  rpc::ChannelCache worker_channels(security->ClusterChannelOptions());
  registry.SetRegistrationListener(
      [&worker_channels](const std::string& address) { worker_channels.Forget(address); });
  router::GrpcPrefillClient prefill_client(worker_channels);
  router::GrpcDecodeClient decode_client(worker_channels);
  router::Relay relay(*model, registry, stats, prefill_client, decode_client, clock, options);
  metrics.TrackRelay(relay);
  router::RouterService router_service(relay, registry, stats, security->policy());
  router::RegistryService registry_service(registry, static_cast<int>(*interval_ms),
                                           security->policy());

  // One port for both services: public clients and workers know one router address. Workers
  // present their cluster certificate on it; public clients need none.
  absl::StatusOr<std::unique_ptr<rpc::ServingServer>> server = rpc::ServingServer::Start(
      {.listen = parser.GetString("listen", "127.0.0.1:0"),
       .credentials = security->ServerCredentials(rpc::ClientCertificates::kVerifyIfPresented)},
      {&router_service, &registry_service});
  if (!server.ok()) return Fail(std::string(server.status().message()));
  std::fprintf(stderr, "listening on %s\n", (*server)->bound().ToString().c_str());

  // The HTTP API goes through the same relay; it starts after gRPC so that "listening on" stays
  // the first address printed (launch scripts wait for it).
  std::unique_ptr<router::openai::OpenAiFront> openai_front;
  std::unique_ptr<http::HttpServer> http_server;
  if (const std::string http_listen = parser.GetString("http-listen"); !http_listen.empty()) {
    router::openai::OpenAiFrontOptions front_options;
    front_options.served_model_name = parser.GetString(
        "served-model-name", router::openai::DefaultServedModelName(parser.GetString("model")));
    const std::string served_model_name = front_options.served_model_name;
    front_options.context_length = model->context_length;
    front_options.security = security->policy();
    front_options.render_metrics = [&metrics] { return metrics.RenderText(); };
    openai_front = std::make_unique<router::openai::OpenAiFront>(relay, registry,
                                                                  std::move(front_options));
    absl::StatusOr<std::unique_ptr<http::HttpServer>> started = http::HttpServer::Start(
        {.listen = http_listen,
         .max_connections = static_cast<int>(*http_max_connections),
         .tls_cert_pem = security->cert_pem(),  // HTTPS when the cluster has TLS
         .tls_key_pem = security->key_pem()},
        [front = openai_front.get()](std::shared_ptr<http::HttpExchange> exchange) {
          front->Handle(std::move(exchange));
        });
    if (!started.ok()) {
      (*server)->Shutdown(std::chrono::seconds(0));
      (*server)->Wait();
      return Fail(std::string(started.status().message()));
    }
    http_server = *std::move(started);
    std::fprintf(stderr, "%s API on %s, model '%s'\n", security->tls() ? "HTTPS" : "HTTP",
                 http_server->bound().c_str(),
                 served_model_name.c_str());
  }
  std::fflush(stderr);

  const int signal_number = signals.Wait();
  std::fprintf(stderr, "pdserve-router: signal %d, shutting down\n", signal_number);
  (*server)->Shutdown(std::chrono::seconds(2));
  (*server)->Wait();
  http_server.reset();  // before the relay its exchanges use
  return 0;
}
