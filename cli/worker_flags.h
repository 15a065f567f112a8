#pragma once
// What every worker binary (prefill and decode) shares around its services: the flags for where
// it listens and how it joins the router, the router heartbeat built from them, and the serve
// loop from "listening on" to shutdown.

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "cli/arg_parser.h"
#include "common/kv/kv_layout.h"
#include "common/rpc/channel_cache.h"
#include "common/rpc/drain_gate.h"
#include "common/rpc/server_process.h"
#include "common/rpc/worker_heartbeat.h"
#include "router.pb.h"

namespace pdserve::cli {

struct WorkerServingFlags {
  rpc::HostPort listen;   // --listen (default 127.0.0.1:0)
  std::string router;     // --router; empty: the worker runs without one
  std::string worker_id;  // --worker-id; empty: "<role>-<bound port>"
  std::string advertise;  // --advertise; empty: the server's LocalAddress()
  // --metrics-port: GET /metrics on the listen host at this port (0: pick one); absent: none.
  std::optional<int> metrics_port;
  // --drain-timeout-s: how long work in flight may take to finish after SIGTERM.
  absl::Duration drain_timeout = absl::Seconds(30);
};

// Declares --listen, --router, --worker-id, --advertise, --drain-timeout-s and --metrics-port.
void AddWorkerServingFlags(ArgParser& parser);
// InvalidArgument naming the flag for a listen address that is not HOST:PORT, an advertised
// one without a port other than 0 (others must be able to call it), a drain timeout that is
// not a whole number of seconds in [0, 3600], or a metrics port outside [0, 65535].
absl::StatusOr<WorkerServingFlags> WorkerServingFlagsFrom(const ArgParser& parser);

// The heartbeat of a worker whose server is up, not yet started; nullptr when no router was
// given. The registration names the worker's role, id, advertised address, KV layout with
// `model_fingerprint` (model::ModelFingerprint; empty: unknown) and model (the model file's
// name). Its channel to the router uses `router_channel` (the cluster's credentials).
std::unique_ptr<rpc::WorkerHeartbeat> MakeWorkerHeartbeat(const WorkerServingFlags& flags,
                                                          const rpc::ServingServer& server,
                                                          v1::WorkerRole role,
                                                          const kv::KvLayout& layout,
                                                          const std::string& model_path,
                                                          const std::string& model_fingerprint,
                                                          rpc::WorkerLoadFn load,
                                                          rpc::ChannelOptions router_channel = {});

// A worker's server: its services and what its registration and heartbeats report.
struct WorkerServer {
  v1::WorkerRole role = v1::WORKER_ROLE_UNSPECIFIED;
  std::vector<grpc::Service*> services;  // not owned; they outlive the call
  int max_receive_message_bytes = 0;     // 0: gRPC's default
  // How callers must connect (rpc::ClusterSecurity::ServerCredentials); null: plaintext.
  std::shared_ptr<grpc::ServerCredentials> credentials;
  // The heartbeat's channel to the router (rpc::ClusterSecurity::ClusterChannelOptions).
  rpc::ChannelOptions router_channel;
  kv::KvLayout kv_layout;
  std::string model_path;
  std::string model_fingerprint;  // model::ModelFingerprint; the router refuses another model's
  rpc::WorkerLoadFn load;
  // The body of GET /metrics (metrics::ScrapeRegistry::RenderText), served on flags.metrics_port when
  // both are given; runs on the metrics server's thread. Over HTTPS with this certificate and
  // key (PEM: rpc::ClusterSecurity::cert_pem, key_pem) when they are set.
  std::function<std::string()> render_metrics;
  std::string metrics_tls_cert_pem;
  std::string metrics_tls_key_pem;
  // Run once calls are no longer taken and in-flight ones had their drain time: ends whatever
  // the remaining handlers wait on, so that they return. May be empty.
  std::function<void()> stop_work;
  // Closed when the drain begins; the services refuse new work with it (rpc::AdmitNewWork).
  // Not owned; may be null (nothing refuses new work before the server stops taking calls).
  rpc::DrainGate* drain_gate = nullptr;
};

// Serves `server.services` on flags.listen until SIGINT/SIGTERM: first GET /metrics on
// flags.metrics_port when it and server.render_metrics are given (prints "metrics on
// HOST:PORT"), then prints "listening on HOST:PORT" (launch scripts and tests wait for it),
// registers with flags.router when given
// (WaitForShutdownWhileRegistering), then on the signal drains (docs/kubernetes.md):
//   1. health turns NOT_SERVING and server.drain_gate closes: new work is refused (UNAVAILABLE),
//      while calls are still taken (those that complete work in flight: KV handoffs);
//   2. the worker deregisters from the router, which admits no new work to it from then on;
//   3. work in flight (server.load's queue_length + active_sequences) gets up to
//      flags.drain_timeout to finish; a second SIGINT/SIGTERM ends the wait at once;
//   4. the server stops taking calls, gives the calls left two seconds when the work is done
//      (none otherwise), runs stop_work and waits for every handler.
// Each step is logged to stderr, prefixed by `program`. When the router refuses the worker
// (another model or KV layout), at start-up or on a re-registration, it prints the router's
// message prefixed by `program` and shuts down at once. Returns the exit status: 0 after a
// signal (drained, timed out or interrupted), 1 (with a message prefixed by `program`) when it
// cannot listen or was refused.
int ServeWorkerUntilSignal(const std::string& program, const rpc::ShutdownSignals& signals,
                           const WorkerServingFlags& flags, const WorkerServer& server);

}  // namespace pdserve::cli
