// pdserve-decode-worker: receives prompts' KV from prefill workers and decodes them with
// continuous batching (DecodeWorker.Decode, KvReceiver.PushKv). Registers with the router and
// heartbeats its load when --router is given.

#include <csignal>
#include <filesystem>
#include <iostream>
#include <memory>
#include <optional>
#include <string>

#include <pthread.h>

#include "absl/strings/str_cat.h"
#include "cli/arg_parser.h"
#include "cli/engine_flags.h"
#include "common/engine/engine.h"
#include "common/rpc/proto_convert.h"
#include "common/rpc/worker_heartbeat.h"
#include "decode_node/decode_scheduler.h"
#include "decode_node/decode_service.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/health_check_service_interface.h"

namespace pdserve::decode {
namespace {

constexpr char kProgram[] = "pdserve-decode-worker";

int Fail(const std::string& message, int code) {
  std::cerr << kProgram << ": " << message << "\n";
  return code;
}

int Run(int argc, char** argv) {
  // Every thread started from here on inherits the blocked set; main waits for them below.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  cli::ArgParser parser;
  cli::AddEngineFlags(parser);
  parser.AddString("listen", "HOST:PORT to serve on; port 0 picks one (default 127.0.0.1:0)");
  parser.AddString("router", "HOST:PORT of the router to register with (optional)");
  parser.AddString("worker-id", "this worker's id (default decode-<port>)");
  parser.AddString("advertise", "HOST:PORT the router gives out (default the listen address)");
  parser.AddString("kv-pool-tokens", "tokens the KV pool holds (default 8192)");
  parser.AddString("max-batch", "most sequences in one decode step (default 32)");
  parser.AddString("kv-timeout-ms", "longest wait for a sequence's KV (default 60000)");
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
  absl::StatusOr<int64_t> pool_tokens = parser.GetInt("kv-pool-tokens", 8192);
  absl::StatusOr<int64_t> max_batch = parser.GetInt("max-batch", 32);
  absl::StatusOr<int64_t> kv_timeout_ms = parser.GetInt("kv-timeout-ms", 60000);
  for (const absl::Status& s :
       {pool_tokens.status(), max_batch.status(), kv_timeout_ms.status()}) {
    if (!s.ok()) return Fail(std::string(s.message()), 2);
  }
  if (*pool_tokens < 1) return Fail("--kv-pool-tokens must be at least 1", 2);
  if (*max_batch < 1 || *max_batch > 4096) return Fail("--max-batch must be in [1, 4096]", 2);
  if (*kv_timeout_ms < 1) return Fail("--kv-timeout-ms must be at least 1", 2);
  options->kv_pool_tokens = *pool_tokens;

  absl::StatusOr<std::unique_ptr<engine::Engine>> engine = engine::Engine::Load(*options);
  if (!engine.ok()) return Fail(std::string(engine.status().message()), 1);
  std::cerr << (*engine)->DeviceReport() << "\n" << (*engine)->KvMemoryReport() << "\n";

  SchedulerOptions scheduler_options;
  scheduler_options.max_batch = static_cast<int>(*max_batch);
  DecodeScheduler scheduler((*engine)->config(), (*engine)->kv_pool(), (*engine)->forward(),
                            (*engine)->tokenizer().end_of_generation_ids(), scheduler_options);
  DecodeServiceOptions service_options;
  service_options.kv_timeout = absl::Milliseconds(*kv_timeout_ms);
  DecodeWorkerService decode_service(scheduler, service_options);
  KvReceiverService kv_service(scheduler);

  const std::string listen = parser.GetString("listen", "127.0.0.1:0");
  const size_t colon = listen.rfind(':');
  if (colon == std::string::npos) return Fail("--listen must be HOST:PORT, got " + listen, 2);
  const std::string host = listen.substr(0, colon);

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(listen, grpc::InsecureServerCredentials(), &port);
  builder.SetMaxReceiveMessageSize(256 << 20);
  builder.RegisterService(&decode_service);
  builder.RegisterService(&kv_service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) return Fail("cannot listen on " + listen, 1);
  const std::string address = absl::StrCat(host, ":", port);
  server->GetHealthCheckService()->SetServingStatus(true);
  std::cerr << "listening on " << address << std::endl;

  std::optional<rpc::WorkerHeartbeat> heartbeat;
  if (parser.Has("router")) {
    rpc::WorkerHeartbeatOptions hb;
    hb.router_address = parser.GetString("router");
    hb.worker_id = parser.GetString("worker-id", absl::StrCat("decode-", port));
    hb.role = v1::WORKER_ROLE_DECODE;
    hb.advertised_address = parser.GetString("advertise", address);
    hb.kv_layout = rpc::KvLayoutToProto((*engine)->kv_pool().layout());
    hb.model_name = std::filesystem::path(options->model_path).filename().string();
    heartbeat.emplace(hb, [&scheduler] { return WorkerLoadToProto(scheduler.Load()); });
    if (absl::Status s = heartbeat->Start(); !s.ok()) {
      std::cerr << kProgram << ": " << s.message() << " (still trying in the background)\n";
    }
  }

  int signal_number = 0;
  sigwait(&signals, &signal_number);
  std::cerr << kProgram << ": signal " << signal_number << ", shutting down\n";
  if (heartbeat) heartbeat->Stop();
  server->GetHealthCheckService()->SetServingStatus(false);
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  return 0;
}

}  // namespace
}  // namespace pdserve::decode

int main(int argc, char** argv) { return pdserve::decode::Run(argc, argv); }
