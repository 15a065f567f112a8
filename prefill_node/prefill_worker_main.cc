// pdserve-prefill-worker: serves PrefillWorker.Prefill — runs prompts and streams their KV blocks
// to decode workers — and, with --router, registers with the router and heartbeats its load.
// Prints "listening on HOST:PORT" to stderr once serving; SIGINT/SIGTERM drain it (prefills in
// flight finish, new work goes elsewhere), then shut it down (exit 0; docs/kubernetes.md).

#include <iostream>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "cli/arg_parser.h"
#include "cli/engine_flags.h"
#include "cli/security_flags.h"
#include "cli/worker_flags.h"
#include "common/engine/engine.h"
#include "common/model/model_fingerprint.h"
#include "common/rpc/proto_convert.h"
#include "common/rpc/server_process.h"
#include "common/kv_transfer/grpc/control_stream.h"
#include "common/kv_transfer/grpc/grpc_transport.h"
#include "common/kv_transfer/send_transports.h"
#include "common/kv_transfer/shm/shm_send_transport.h"
#include "common/kv_transfer/tcp/tcp_send_transport.h"
#include "prefill_node/prefill_metrics.h"
#include "prefill_node/prefill_scheduler.h"
#include "prefill_node/prefill_service.h"

namespace pdserve::prefill {
namespace {

constexpr char kProgram[] = "pdserve-prefill-worker";

int Fail(const std::string& message, int code) {
  std::cerr << kProgram << ": " << message << "\n";
  return code;
}

int Run(int argc, char** argv) {
  const rpc::ShutdownSignals signals;  // before any thread starts

  cli::ArgParser parser;
  cli::AddEngineFlags(parser);
  cli::AddWorkerServingFlags(parser);
  cli::AddSecurityFlags(parser, cli::SecurityRole::kWorker);
  parser.AddString("queue-capacity", "requests that may wait for an executor (default 16)");
  parser.AddString("executors", "prompts run at once; forward passes take turns (default 2)");
  parser.AddString("kv-pool-tokens", "tokens of KV this worker holds (default one context)");
  parser.AddString("kv-transport",
                   "how KV goes to decode workers: auto (the first of shm, tcp, grpc that the "
                   "decode worker offers and this worker can use), grpc, shm or tcp "
                   "(default auto)");
  parser.AddBool("help", "show this help");
  if (absl::Status s = parser.Parse(argc, argv); !s.ok()) {
    return Fail(absl::StrCat(s.message(), "\n", parser.Usage(kProgram)), 2);
  }
  if (parser.GetBool("help")) {
    std::cout << parser.Usage(kProgram);
    return 0;
  }
  absl::StatusOr<engine::EngineOptions> options = cli::EngineOptionsFromFlags(parser);
  if (!options.ok()) return Fail(std::string(options.status().message()), 2);
  absl::StatusOr<cli::WorkerServingFlags> serving = cli::WorkerServingFlagsFrom(parser);
  if (!serving.ok()) return Fail(std::string(serving.status().message()), 2);
  absl::StatusOr<rpc::ClusterSecurity> security = cli::ClusterSecurityFromFlags(parser);
  if (!security.ok()) return Fail(std::string(security.status().message()), 2);
  std::cerr << security->Describe() << "\n";
  absl::StatusOr<int64_t> capacity = parser.GetInt("queue-capacity", 16);
  if (!capacity.ok()) return Fail(std::string(capacity.status().message()), 2);
  if (*capacity < 0 || *capacity > 1000000) {
    return Fail(absl::StrCat("--queue-capacity must be in [0, 1000000], got ", *capacity), 2);
  }
  absl::StatusOr<int64_t> executors = parser.GetInt("executors", 2);
  if (!executors.ok()) return Fail(std::string(executors.status().message()), 2);
  if (*executors < 1 || *executors > 64) {
    return Fail(absl::StrCat("--executors must be in [1, 64], got ", *executors), 2);
  }
  absl::StatusOr<int64_t> pool_tokens = parser.GetInt("kv-pool-tokens", 0);
  if (!pool_tokens.ok()) return Fail(std::string(pool_tokens.status().message()), 2);
  if (*pool_tokens < 0) return Fail("--kv-pool-tokens must be >= 0", 2);
  options->kv_pool_tokens = *pool_tokens;
  absl::StatusOr<kv_transfer::TransportMode> transport =
      kv_transfer::ParseTransportMode(parser.GetString("kv-transport", "auto"));
  if (!transport.ok()) return Fail(std::string(transport.status().message()), 2);

  absl::StatusOr<std::unique_ptr<engine::Engine>> engine = engine::Engine::Load(*options);
  if (!engine.ok()) return Fail(std::string(engine.status().message()), 1);
  absl::StatusOr<std::string> fingerprint =
      model::ModelFingerprint(options->model_path, options->tokenizer_path);
  if (!fingerprint.ok()) return Fail(std::string(fingerprint.status().message()), 1);
  std::cerr << (*engine)->DeviceReport() << "\n" << (*engine)->KvMemoryReport() << "\n";

  rpc::ChannelCache kv_channels(security->ClusterChannelOptions());
  kv_transfer::KvSendTransports transports(*transport);
  transports.Add(std::make_unique<kv_transfer::GrpcKvSendTransport>(kv_channels));
  transports.Add(std::make_unique<kv_transfer::ShmKvSendTransport>(kv_channels));
  transports.Add(std::make_unique<kv_transfer::TcpKvSendTransport>(kv_channels));
  PrefillSchedulerOptions scheduler_options;
  scheduler_options.model_fingerprint = *fingerprint;
  scheduler_options.queue_capacity = static_cast<int>(*capacity);
  scheduler_options.n_executors = static_cast<int>(*executors);
  PrefillScheduler scheduler(**engine, transports, scheduler_options);
  rpc::DrainGate drain_gate;
  PrefillMetrics metrics(scheduler);
  PrefillService service(scheduler, /*log_requests=*/true, security->policy(), &drain_gate,
                         &metrics);

  cli::WorkerServer server;
  server.role = v1::WORKER_ROLE_PREFILL;
  server.services = {&service};
  server.kv_layout = (*engine)->kv_pool().layout();
  server.model_path = options->model_path;
  server.model_fingerprint = *fingerprint;
  server.credentials = security->ServerCredentials(rpc::ClientCertificates::kRequire);
  server.router_channel = security->ClusterChannelOptions();
  server.load = [&scheduler] { return rpc::WorkerLoadToProto(scheduler.load()); };
  server.render_metrics = [&metrics] { return metrics.RenderText(); };
  server.metrics_tls_cert_pem = security->cert_pem();
  server.metrics_tls_key_pem = security->key_pem();
  // Stops whatever is still running after the drain and frees its blocks, which lets the
  // handlers of cancelled calls return.
  server.stop_work = [&scheduler] { scheduler.Shutdown(); };
  server.drain_gate = &drain_gate;
  return cli::ServeWorkerUntilSignal(kProgram, signals, *serving, server);
}

}  // namespace
}  // namespace pdserve::prefill

int main(int argc, char** argv) { return pdserve::prefill::Run(argc, argv); }
