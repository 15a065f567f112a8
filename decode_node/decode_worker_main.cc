// pdserve-decode-worker: receives prompts' KV from prefill workers and decodes them with
// continuous batching (DecodeWorker.Decode, KvReceiver.PushKv). With --router, registers with the
// router and heartbeats its load. Prints "listening on HOST:PORT" to stderr once serving;
// SIGINT/SIGTERM drain it (streams in flight finish, new work goes elsewhere), then shut it down
// (exit 0; docs/kubernetes.md).

#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "cli/arg_parser.h"
#include "cli/engine_flags.h"
#include "cli/security_flags.h"
#include "cli/worker_flags.h"
#include "common/engine/engine.h"
#include "common/model/model_fingerprint.h"
#include "common/kv_transfer/grpc/kv_receiver_service.h"
#include "common/kv_transfer/handoff.h"
#include "common/kv_transfer/shm/shared_memory_region.h"
#include "common/kv_transfer/tcp/tcp_kv_receiver.h"
#include "common/rpc/proto_convert.h"
#include "common/rpc/server_process.h"
#include "decode_node/decode_metrics.h"
#include "decode_node/decode_scheduler.h"
#include "decode_node/decode_service.h"

namespace pdserve::decode {
namespace {

constexpr char kProgram[] = "pdserve-decode-worker";

// A KvChunk carries a prefill chunk of whole blocks: an 8B LLaMA's bf16 block of 16 tokens is
// 2 MiB, so a chunk of them passes gRPC's 4 MiB default.
constexpr int kMaxKvMessageBytes = 256 << 20;

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
  parser.AddString("kv-pool-tokens", "tokens the KV pool holds (default 8192)");
  parser.AddString("max-batch", "most sequences in one decode step (default 32)");
  parser.AddString("kv-lease-idle-ms",
                   "a reservation fails when no KV arrives for this long (default 10000)");
  parser.AddString("kv-lease-max-ms",
                   "a reservation fails when its KV takes longer in all (default 60000)");
  parser.AddString("max-waiting-reservations",
                   "most Decode calls waiting for KV blocks at once; more are refused with "
                   "RESOURCE_EXHAUSTED (default 256)");
  parser.AddString("stalled-stream-timeout-ms",
                   "a Decode stream whose client stops reading leaves the batch after 8 untaken "
                   "tokens and is ended (ABORTED, blocks freed) after this long (default 30000)");
  parser.AddString("kv-transport",
                   "how KV may arrive: auto (every transport this worker can take), grpc, shm "
                   "or tcp (default auto)");
  parser.AddString("min-step-ms",
                   "each decode step lasts at least this long (default 0; for tests: makes a "
                   "tiny model's streams long enough to interrupt)");
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
  absl::StatusOr<int64_t> pool_tokens = parser.GetInt("kv-pool-tokens", 8192);
  absl::StatusOr<int64_t> max_batch = parser.GetInt("max-batch", 32);
  absl::StatusOr<int64_t> lease_idle_ms = parser.GetInt("kv-lease-idle-ms", 10000);
  absl::StatusOr<int64_t> lease_max_ms = parser.GetInt("kv-lease-max-ms", 60000);
  absl::StatusOr<int64_t> max_waiting = parser.GetInt("max-waiting-reservations", 256);
  absl::StatusOr<int64_t> stalled_timeout_ms = parser.GetInt("stalled-stream-timeout-ms", 30000);
  absl::StatusOr<int64_t> min_step_ms = parser.GetInt("min-step-ms", 0);
  absl::StatusOr<kv_transfer::TransportMode> transport =
      kv_transfer::ParseTransportMode(parser.GetString("kv-transport", "auto"));
  for (const absl::Status& s : {pool_tokens.status(), max_batch.status(), lease_idle_ms.status(),
                                lease_max_ms.status(), max_waiting.status(),
                                stalled_timeout_ms.status(), min_step_ms.status(),
                                transport.status()}) {
    if (!s.ok()) return Fail(std::string(s.message()), 2);
  }
  if (*pool_tokens < 1) return Fail("--kv-pool-tokens must be at least 1", 2);
  if (*max_batch < 1 || *max_batch > 4096) return Fail("--max-batch must be in [1, 4096]", 2);
  constexpr int64_t kMaxLeaseMs = int64_t{24} * 3600 * 1000;
  for (const auto& [flag, value] : {std::pair{"--kv-lease-idle-ms", *lease_idle_ms},
                                    std::pair{"--kv-lease-max-ms", *lease_max_ms}}) {
    if (value < 1 || value > kMaxLeaseMs) {
      return Fail(absl::StrCat(flag, " must be in [1, ", kMaxLeaseMs, "], got ", value), 2);
    }
  }
  if (*max_waiting < 0 || *max_waiting > 1000000) {
    return Fail("--max-waiting-reservations must be in [0, 1000000]", 2);
  }
  if (*stalled_timeout_ms < 1 || *stalled_timeout_ms > kMaxLeaseMs) {
    return Fail(absl::StrCat("--stalled-stream-timeout-ms must be in [1, ", kMaxLeaseMs,
                             "], got ", *stalled_timeout_ms),
                2);
  }
  if (*min_step_ms < 0 || *min_step_ms > 10000) {
    return Fail(absl::StrCat("--min-step-ms must be in [0, 10000], got ", *min_step_ms), 2);
  }
  options->kv_pool_tokens = *pool_tokens;
  // The shm transport needs the pool in shared memory, which only a host pool can be.
  const bool offer_shm = options->device == engine::Device::kCpu &&
                         kv_transfer::ModeAllows(*transport, kv_transfer::kShmTransport);
  if (*transport == kv_transfer::TransportMode::kShm && !offer_shm) {
    return Fail("--kv-transport shm needs --device cpu (the pool must be in host memory)", 2);
  }
  options->kv_pool_in_shared_memory = offer_shm;
  if (offer_shm) {
    // Pools of decode workers that were killed (SIGKILL, OOM) stay in /dev/shm until removed.
    for (const std::string& name : kv_transfer::RemoveOrphanedRegions()) {
      std::cerr << kProgram << ": removed the orphaned KV pool " << name << " from /dev/shm\n";
    }
  }

  absl::StatusOr<std::unique_ptr<engine::Engine>> engine = engine::Engine::Load(*options);
  if (!engine.ok()) return Fail(std::string(engine.status().message()), 1);
  absl::StatusOr<std::string> fingerprint =
      model::ModelFingerprint(options->model_path, options->tokenizer_path);
  if (!fingerprint.ok()) return Fail(std::string(fingerprint.status().message()), 1);
  std::cerr << (*engine)->DeviceReport() << "\n" << (*engine)->KvMemoryReport() << "\n";

  SchedulerOptions scheduler_options;
  scheduler_options.model_fingerprint = *fingerprint;
  scheduler_options.max_batch = static_cast<int>(*max_batch);
  scheduler_options.kv_lease.idle = absl::Milliseconds(*lease_idle_ms);
  scheduler_options.kv_lease.max = absl::Milliseconds(*lease_max_ms);
  scheduler_options.max_waiting_reservations = static_cast<int>(*max_waiting);
  scheduler_options.stalled_stream_timeout = absl::Milliseconds(*stalled_timeout_ms);
  scheduler_options.min_step_duration = absl::Milliseconds(*min_step_ms);
  // Far longer than a prefill worker takes to stop writing once cancelled (a poll of 20 ms and
  // one block copy): docs/kv-transfer.md.
  if (offer_shm) scheduler_options.kv_quarantine = absl::Seconds(2);
  DecodeMetrics metrics;  // outlives the scheduler, which reports to it
  scheduler_options.observer = &metrics;
  DecodeScheduler scheduler((*engine)->config(), (*engine)->kv_pool(), (*engine)->forward(),
                            (*engine)->tokenizer().end_of_generation_ids(), scheduler_options);
  metrics.TrackScheduler(scheduler);
  rpc::DrainGate drain_gate;
  DecodeServiceOptions service_options;
  service_options.security = security->policy();
  service_options.drain_gate = &drain_gate;
  if (offer_shm) {
    absl::StatusOr<std::string> boot_id = kv_transfer::HostBootId();
    if (!boot_id.ok()) return Fail(std::string(boot_id.status().message()), 1);
    service_options.kv_offers.push_back(
        {std::string(kv_transfer::kShmTransport), (*engine)->kv_pool_shm_name(), *boot_id});
  }
  // tcp: blocks read straight into the pool, on an ephemeral port of the listening host (the
  // offer's ":port" means the host prefill reaches this worker's gRPC address at).
  kv_transfer::TcpKvReceiver tcp_receiver(scheduler, (*engine)->kv_pool());
  const bool offer_tcp = (*engine)->kv_pool().on_host() &&
                         kv_transfer::ModeAllows(*transport, kv_transfer::kTcpTransport);
  if (*transport == kv_transfer::TransportMode::kTcp && !offer_tcp) {
    return Fail("--kv-transport tcp needs --device cpu (the pool must be in host memory)", 2);
  }
  if (offer_tcp) {
    if (absl::Status s = tcp_receiver.Start(serving->listen.host, 0); !s.ok()) {
      return Fail(std::string(s.message()), 1);
    }
    service_options.kv_offers.push_back(
        {std::string(kv_transfer::kTcpTransport), absl::StrCat(":", tcp_receiver.port()), ""});
  }
  if (kv_transfer::ModeAllows(*transport, kv_transfer::kGrpcTransport)) {
    service_options.kv_offers.push_back({std::string(kv_transfer::kGrpcTransport), "", ""});
  }
  DecodeWorkerService decode_service(scheduler, service_options);
  std::vector<std::string> accepted_transports;
  for (const kv_transfer::TransportOffer& offer : service_options.kv_offers) {
    accepted_transports.push_back(offer.transport);
  }
  kv_transfer::KvReceiverService kv_service(scheduler, (*engine)->kv_pool(), accepted_transports,
                                            security->policy());

  cli::WorkerServer server;
  server.role = v1::WORKER_ROLE_DECODE;
  server.services = {&decode_service, &kv_service};
  server.max_receive_message_bytes = kMaxKvMessageBytes;
  server.kv_layout = (*engine)->kv_pool().layout();
  server.model_path = options->model_path;
  server.model_fingerprint = *fingerprint;
  server.credentials = security->ServerCredentials(rpc::ClientCertificates::kRequire);
  server.router_channel = security->ClusterChannelOptions();
  server.load = [&scheduler] { return rpc::WorkerLoadToProto(scheduler.Load()); };
  server.render_metrics = [&metrics] { return metrics.RenderText(); };
  server.metrics_tls_cert_pem = security->cert_pem();
  server.metrics_tls_key_pem = security->key_pem();
  server.drain_gate = &drain_gate;
  return cli::ServeWorkerUntilSignal(kProgram, signals, *serving, server);
}

}  // namespace
}  // namespace pdserve::decode

int main(int argc, char** argv) { return pdserve::decode::Run(argc, argv); }
