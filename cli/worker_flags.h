#pragma once
// What every worker binary (prefill and decode) shares around its services: the flags for where
// it listens and how it joins the router, the router heartbeat built from them, and the serve
// loop from "listening on" to shutdown.

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "cli/arg_parser.h"
#include "common/kv/kv_layout.h"
#include "common/rpc/channel_cache.h"
#include "common/rpc/server_process.h"
#include "common/rpc/worker_heartbeat.h"
#include "router.pb.h"

namespace pdserve::cli {

struct WorkerServingFlags {
  rpc::HostPort listen;   // --listen (default 127.0.0.1:0)
  std::string router;     // --router; empty: the worker runs without one
  std::string worker_id;  // --worker-id; empty: "<role>-<bound port>"
  std::string advertise;  // --advertise; empty: the server's LocalAddress()
};

// Declares --listen, --router, --worker-id and --advertise.
void AddWorkerServingFlags(ArgParser& parser);
// InvalidArgument naming the flag for a listen address that is not HOST:PORT, or an advertised
// one without a port other than 0 (others must be able to call it).
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
  // Run once calls are no longer taken and in-flight ones had their drain time: ends whatever
  // the remaining handlers wait on, so that they return. May be empty.
  std::function<void()> stop_work;
};

// Serves `server.services` on flags.listen until SIGINT/SIGTERM: prints "listening on
// HOST:PORT" (launch scripts and tests wait for it), registers with flags.router when given
// (WaitForShutdownWhileRegistering), then on the signal stops taking calls, gives in-flight ones
// two seconds, runs stop_work and waits for every handler. When the router refuses the worker
// (another model or KV layout), at start-up or on a re-registration, it prints the router's
// message prefixed by `program` and shuts down the same way at once. Returns the exit status: 0
// after a signal, 1 (with a message prefixed by `program`) when it cannot listen or was refused.
int ServeWorkerUntilSignal(const std::string& program, const rpc::ShutdownSignals& signals,
                           const WorkerServingFlags& flags, const WorkerServer& server);

}  // namespace pdserve::cli
