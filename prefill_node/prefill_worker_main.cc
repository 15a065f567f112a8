// pdserve-prefill-worker: serves PrefillWorker.Prefill — runs prompts and streams their KV blocks
// to decode workers — and, with --router, registers with the router and heartbeats its load.
// Prints "listening on HOST:PORT" to stderr once serving; SIGINT/SIGTERM shut it down (exit 0).

#include <pthread.h>
#include <signal.h>

#include <chrono>
#include <ctime>
#include <future>
#include <iostream>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "cli/arg_parser.h"
#include "cli/engine_flags.h"
#include "common/engine/engine.h"
#include "common/rpc/proto_convert.h"
#include "common/rpc/worker_heartbeat.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "prefill_node/grpc_kv_sink.h"
#include "prefill_node/prefill_scheduler.h"
#include "prefill_node/prefill_service.h"

namespace pdserve::prefill {
namespace {

constexpr char kProgram[] = "pdserve-prefill-worker";

// HOST:PORT → (HOST, PORT); the port is after the last ':' so "[::]:0" works.
bool SplitHostPort(const std::string& address, std::string* host, int* port) {
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos || colon == 0) return false;
  *host = address.substr(0, colon);
  try {
    size_t used = 0;
    const std::string digits = address.substr(colon + 1);
    *port = std::stoi(digits, &used);
    return used == digits.size() && *port >= 0 && *port <= 65535;
  } catch (...) {
    return false;
  }
}

std::string BaseName(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

int Fail(const std::string& message, int code) {
  std::cerr << kProgram << ": " << message << "\n";
  return code;
}

int Run(int argc, char** argv) {
  // Signals are taken by sigwait in this thread: block them before any thread starts so that
  // every thread inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  cli::ArgParser parser;
  cli::AddEngineFlags(parser);
  parser.AddString("listen", "HOST:PORT to serve on; port 0 picks one (default 127.0.0.1:0)");
  parser.AddString("router", "HOST:PORT of the router: register and heartbeat (optional)");
  parser.AddString("worker-id", "this worker's id (default prefill-<port>)");
  parser.AddString("queue-capacity", "requests that may wait for an executor (default 16)");
  parser.AddString("advertise",
                   "HOST:PORT given to the router (default the listen address; a wildcard host "
                   "becomes 127.0.0.1)");
  parser.AddString("executors", "prompts run at once; forward passes take turns (default 2)");
  parser.AddString("kv-pool-tokens", "tokens of KV this worker holds (default one context)");
  parser.AddBool("help", "show this help");
  if (absl::Status s = parser.Parse(argc, argv); !s.ok()) {
    std::cerr << kProgram << ": " << s.message() << "\n" << parser.Usage(kProgram);
    return 2;
  }
  if (parser.GetBool("help")) {
    std::cout << parser.Usage(kProgram);
    return 0;
  }
  absl::StatusOr<engine::EngineOptions> options = cli::EngineOptionsFromFlags(parser);
  if (!options.ok()) return Fail(std::string(options.status().message()), 2);
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
  const std::string listen = parser.GetString("listen", "127.0.0.1:0");
  std::string listen_host;
  int listen_port = 0;
  if (!SplitHostPort(listen, &listen_host, &listen_port)) {
    return Fail(absl::StrCat("--listen must be HOST:PORT, got '", listen, "'"), 2);
  }
  if (parser.Has("advertise")) {
    std::string host;
    int port = 0;
    if (!SplitHostPort(parser.GetString("advertise"), &host, &port) || port == 0) {
      return Fail(absl::StrCat("--advertise must be HOST:PORT with a port, got '",
                               parser.GetString("advertise"), "'"),
                  2);
    }
  }

  absl::StatusOr<std::unique_ptr<engine::Engine>> engine = engine::Engine::Load(*options);
  if (!engine.ok()) return Fail(std::string(engine.status().message()), 1);
  std::cerr << (*engine)->DeviceReport() << "\n" << (*engine)->KvMemoryReport() << "\n";

  GrpcKvSinkFactory sinks;
  PrefillSchedulerOptions scheduler_options;
  scheduler_options.queue_capacity = static_cast<int>(*capacity);
  scheduler_options.n_executors = static_cast<int>(*executors);
  PrefillScheduler scheduler(**engine, sinks, scheduler_options);
  PrefillService service(scheduler, /*log_requests=*/true);

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int bound_port = 0;
  builder.AddListeningPort(listen, grpc::InsecureServerCredentials(), &bound_port);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || bound_port == 0) {
    return Fail(absl::StrCat("cannot listen on ", listen), 1);
  }
  const std::string bound_address = absl::StrCat(listen_host, ":", bound_port);
  std::string advertise = parser.GetString("advertise");
  if (advertise.empty()) {
    const bool wildcard = listen_host == "0.0.0.0" || listen_host == "[::]" || listen_host == "::";
    advertise = absl::StrCat(wildcard ? "127.0.0.1" : listen_host, ":", bound_port);
  }
  const std::string worker_id = parser.GetString("worker-id", absl::StrCat("prefill-", bound_port));

  std::unique_ptr<rpc::WorkerHeartbeat> heartbeat;
  if (parser.Has("router")) {
    rpc::WorkerHeartbeatOptions hb;
    hb.router_address = parser.GetString("router");
    hb.worker_id = worker_id;
    hb.role = v1::WORKER_ROLE_PREFILL;
    hb.advertised_address = advertise;
    hb.kv_layout = rpc::KvLayoutToProto((*engine)->kv_pool().layout());
    hb.model_name = BaseName(options->model_path);
    heartbeat = std::make_unique<rpc::WorkerHeartbeat>(hb, [&scheduler] {
      const PrefillLoad load = scheduler.load();
      v1::WorkerLoad proto;
      proto.set_queue_length(load.queue_length);
      proto.set_active_sequences(load.active_sequences);
      proto.set_free_kv_blocks(load.free_kv_blocks);
      proto.set_total_kv_blocks(load.total_kv_blocks);
      return proto;
    });
  }

  server->GetHealthCheckService()->SetServingStatus(true);
  std::cerr << "listening on " << bound_address << std::endl;
  // Registration runs beside the signal wait, so that SIGTERM during it still stops at once.
  std::future<absl::Status> registration;
  if (heartbeat != nullptr) {
    registration = std::async(std::launch::async, [&heartbeat] { return heartbeat->Start(); });
  }
  int received = 0;
  while (received <= 0) {
    const timespec poll{0, 100 * 1000 * 1000};
    received = sigtimedwait(&signals, nullptr, &poll);
    if (received > 0 || !registration.valid() ||
        registration.wait_for(std::chrono::seconds(0)) != std::future_status::ready) {
      continue;
    }
    if (absl::Status s = registration.get(); !s.ok()) {
      std::cerr << kProgram << ": " << s.message() << "\n";
      heartbeat->Stop();
      server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
      scheduler.Shutdown();
      return 1;
    }
    std::cerr << "registered with the router at " << parser.GetString("router") << " as "
              << worker_id << " (" << advertise << ")" << std::endl;
  }
  std::cerr << "signal " << received << ": shutting down" << std::endl;
  if (heartbeat != nullptr) heartbeat->Stop();  // also ends a registration still in progress
  if (registration.valid()) registration.wait();
  server->GetHealthCheckService()->SetServingStatus(false);
  // In-flight calls get two seconds to finish, then are cancelled; the scheduler then stops
  // whatever is still running and frees its blocks.
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  scheduler.Shutdown();
  server->Wait();
  return 0;
}

}  // namespace
}  // namespace pdserve::prefill

int main(int argc, char** argv) { return pdserve::prefill::Run(argc, argv); }
