#pragma once
// Flags every worker binary (prefill and decode) shares: where it listens and how it joins the
// router, and the router heartbeat built from them once the worker's server is up.

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "cli/arg_parser.h"
#include "common/kv/kv_layout.h"
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
// given. The registration names the worker's role, id, advertised address, KV layout and model
// (the model file's name).
std::unique_ptr<rpc::WorkerHeartbeat> MakeWorkerHeartbeat(const WorkerServingFlags& flags,
                                                          const rpc::ServingServer& server,
                                                          v1::WorkerRole role,
                                                          const kv::KvLayout& layout,
                                                          const std::string& model_path,
                                                          rpc::WorkerLoadFn load);

}  // namespace pdserve::cli
