#include "cli/worker_flags.h"

#include <chrono>
#include <filesystem>
#include <iostream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/metrics/metrics_http.h"
#include "common/rpc/proto_convert.h"

namespace pdserve::cli {

void AddWorkerServingFlags(ArgParser& parser) {
  parser.AddString("listen", "HOST:PORT to serve on; port 0 picks one (default 127.0.0.1:0)");
  parser.AddString("router", "HOST:PORT of the router: register and heartbeat (optional)");
  parser.AddString("worker-id", "this worker's id (default <role>-<port>)");
  parser.AddString("advertise",
                   "HOST:PORT given to the router (default the listen address; a wildcard host "
                   "becomes 127.0.0.1)");
  parser.AddString("metrics-port",
                   "serve Prometheus metrics (GET /metrics) on this port of the listen host; 0 "
                   "picks one (default: none)");
  parser.AddString("drain-timeout-s",
                   "after SIGTERM, seconds that work in flight may take to finish while new "
                   "work is refused (default 30; a second signal stops at once)");
}

absl::StatusOr<WorkerServingFlags> WorkerServingFlagsFrom(const ArgParser& parser) {
  WorkerServingFlags flags;
  absl::StatusOr<rpc::HostPort> listen =
      rpc::ParseHostPort(parser.GetString("listen", "127.0.0.1:0"));
  if (!listen.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--listen: ", std::string(listen.status().message())));
  }
  flags.listen = *std::move(listen);
  flags.router = parser.GetString("router");
  flags.worker_id = parser.GetString("worker-id");
  flags.advertise = parser.GetString("advertise");
  if (parser.Has("advertise")) {
    absl::StatusOr<rpc::HostPort> advertise = rpc::ParseHostPort(flags.advertise);
    if (!advertise.ok() || advertise->port == 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--advertise must be HOST:PORT with a port, got '", flags.advertise, "'"));
    }
  }
  if (parser.Has("router") && flags.router.empty()) {
    return absl::InvalidArgumentError("--router must be HOST:PORT, got an empty value");
  }
  if (parser.Has("metrics-port")) {
    absl::StatusOr<int64_t> port = parser.GetInt("metrics-port", 0);
    if (!port.ok() || *port < 0 || *port > 65535) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--metrics-port must be a port in [0, 65535], got '", parser.GetString("metrics-port"),
          "'"));
    }
    flags.metrics_port = static_cast<int>(*port);
  }
  constexpr int64_t kMaxDrainSeconds = 3600;
  absl::StatusOr<int64_t> drain_s = parser.GetInt("drain-timeout-s", 30);
  if (!drain_s.ok()) return drain_s.status();
  if (*drain_s < 0 || *drain_s > kMaxDrainSeconds) {
    return absl::InvalidArgumentError(absl::StrCat("--drain-timeout-s must be in [0, ",
                                                   kMaxDrainSeconds, "], got ", *drain_s));
  }
  flags.drain_timeout = absl::Seconds(*drain_s);
  return flags;
}

std::unique_ptr<rpc::WorkerHeartbeat> MakeWorkerHeartbeat(const WorkerServingFlags& flags,
                                                          const rpc::ServingServer& server,
                                                          v1::WorkerRole role,
                                                          const kv::KvLayout& layout,
                                                          const std::string& model_path,
                                                          const std::string& model_fingerprint,
                                                          rpc::WorkerLoadFn load,
                                                          rpc::ChannelOptions router_channel) {
  if (flags.router.empty()) return nullptr;
  const std::string role_name = role == v1::WORKER_ROLE_PREFILL ? "prefill" : "decode";
  rpc::WorkerHeartbeatOptions options;
  options.router_address = flags.router;
  options.router_channel = std::move(router_channel);
  options.worker_id = flags.worker_id.empty()
                          ? absl::StrCat(role_name, "-", server.bound().port)
                          : flags.worker_id;
  options.role = role;
  options.advertised_address =
      flags.advertise.empty() ? server.LocalAddress() : flags.advertise;
  options.kv_layout = rpc::KvLayoutToProto(layout);
  options.kv_layout.set_model_fingerprint(model_fingerprint);
  options.model_name = std::filesystem::path(model_path).filename().string();
  return std::make_unique<rpc::WorkerHeartbeat>(std::move(options), std::move(load));
}

namespace {

// Requests the worker has taken and not finished: its load's queue and active sequences.
int64_t WorkInFlight(const WorkerServer& server) {
  if (!server.load) return 0;
  const v1::WorkerLoad load = server.load();
  return load.queue_length() + load.active_sequences();
}

// Steps 1-3 of ServeWorkerUntilSignal's drain; the caller stops the server.
rpc::DrainEnd Drain(const std::string& program, const rpc::ShutdownSignals& signals,
                    const WorkerServingFlags& flags, const WorkerServer& server,
                    rpc::ServingServer& serving, rpc::WorkerHeartbeat* heartbeat) {
  const absl::Time start = absl::Now();
  serving.ReportNotServing();
  if (server.drain_gate != nullptr) server.drain_gate->Close();
  if (heartbeat != nullptr) {
    if (absl::Status s = heartbeat->Deregister(); s.ok()) {
      std::cerr << program << ": deregistered from the router at "
                << heartbeat->options().router_address << std::endl;
    } else {
      std::cerr << program << ": " << s.message()
                << " (the router drops this worker after its heartbeat timeout)" << std::endl;
    }
  }
  std::cerr << program << ": draining: health NOT_SERVING, new work refused, "
            << WorkInFlight(server) << " requests in flight get up to "
            << absl::FormatDuration(flags.drain_timeout)
            << " to finish (another signal stops at once)" << std::endl;
  const rpc::DrainEnd end = rpc::WaitUntilDrained(
      signals, [&server] { return WorkInFlight(server); }, flags.drain_timeout);
  std::cerr << program << ": drain " << rpc::DrainEndName(end) << " after "
            << absl::FormatDuration(absl::Trunc(absl::Now() - start, absl::Milliseconds(1)));
  if (end != rpc::DrainEnd::kIdle) {
    std::cerr << ": cancelling the " << WorkInFlight(server) << " requests still in flight";
  }
  std::cerr << std::endl;
  return end;
}

}  // namespace

int ServeWorkerUntilSignal(const std::string& program, const rpc::ShutdownSignals& signals,
                           const WorkerServingFlags& flags, const WorkerServer& server) {
  std::unique_ptr<http::HttpServer> metrics_server;
  if (flags.metrics_port.has_value() && server.render_metrics) {
    absl::StatusOr<std::unique_ptr<http::HttpServer>> started = metrics::StartMetricsServer(
        rpc::HostPort{flags.listen.host, *flags.metrics_port}.ToString(), server.render_metrics,
        server.metrics_tls_cert_pem, server.metrics_tls_key_pem);
    if (!started.ok()) {
      std::cerr << program << ": --metrics-port: " << started.status().message() << "\n";
      return 1;
    }
    metrics_server = *std::move(started);
    std::cerr << "metrics on " << metrics_server->bound() << std::endl;
  }
  absl::StatusOr<std::unique_ptr<rpc::ServingServer>> serving = rpc::ServingServer::Start(
      {.listen = flags.listen.ToString(),
       .max_receive_message_bytes = server.max_receive_message_bytes,
       .credentials = server.credentials},
      server.services);
  if (!serving.ok()) {
    std::cerr << program << ": " << serving.status().message() << "\n";
    return 1;
  }
  std::cerr << "listening on " << (*serving)->bound().ToString() << std::endl;

  std::unique_ptr<rpc::WorkerHeartbeat> heartbeat =
      MakeWorkerHeartbeat(flags, **serving, server.role, server.kv_layout, server.model_path,
                          server.model_fingerprint, server.load, server.router_channel);
  const absl::StatusOr<int> signal_number =
      rpc::WaitForShutdownWhileRegistering(signals, heartbeat.get(), program);
  // Calls left once the work is done (a last message being written) get this long.
  std::chrono::milliseconds grace(2000);
  if (signal_number.ok()) {
    std::cerr << program << ": signal " << *signal_number << ", shutting down" << std::endl;
    if (Drain(program, signals, flags, server, **serving, heartbeat.get()) !=
        rpc::DrainEnd::kIdle) {
      grace = std::chrono::milliseconds(0);
    }
  } else {
    std::cerr << program << ": " << signal_number.status().message() << std::endl;
  }
  (*serving)->Shutdown(grace);
  if (server.stop_work) server.stop_work();
  (*serving)->Wait();
  return signal_number.ok() ? 0 : 1;
}

}  // namespace pdserve::cli
