#include "cli/worker_flags.h"

#include <chrono>
#include <filesystem>
#include <iostream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/rpc/proto_convert.h"

namespace pdserve::cli {

void AddWorkerServingFlags(ArgParser& parser) {
  parser.AddString("listen", "HOST:PORT to serve on; port 0 picks one (default 127.0.0.1:0)");
  parser.AddString("router", "HOST:PORT of the router: register and heartbeat (optional)");
  parser.AddString("worker-id", "this worker's id (default <role>-<port>)");
  parser.AddString("advertise",
                   "HOST:PORT given to the router (default the listen address; a wildcard host "
                   "becomes 127.0.0.1)");
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

int ServeWorkerUntilSignal(const std::string& program, const rpc::ShutdownSignals& signals,
                           const WorkerServingFlags& flags, const WorkerServer& server) {
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
  if (signal_number.ok()) {
    std::cerr << program << ": signal " << *signal_number << ", shutting down" << std::endl;
  } else {
    std::cerr << program << ": " << signal_number.status().message() << std::endl;
  }
  (*serving)->Shutdown(std::chrono::seconds(2));
  if (server.stop_work) server.stop_work();
  (*serving)->Wait();
  return signal_number.ok() ? 0 : 1;
}

}  // namespace pdserve::cli
