#pragma once
// A worker's side of the router's WorkerRegistry: register at start-up, then heartbeat with the
// current load on a thread of its own; register again whenever the router forgets the worker
// (it answers registered=false, e.g. after a restart) or a heartbeat fails (the router went away:
// when it is back, the worker is in its table again); deregister when it drains before exiting.
// Used by prefill and decode workers alike.
//
// A FAILED_PRECONDITION answer to RegisterWorker is final, at start-up or on a re-registration:
// the router refuses this worker (another model, another KV layout) and asking again cannot
// change that. The thread ends and refusal() holds the router's message; every other error is
// retried.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/rpc/channel_cache.h"
#include "common/rpc/server_process.h"
#include "common.pb.h"
#include "router.pb.h"
#include "worker.grpc.pb.h"

namespace pdserve::rpc {

struct WorkerHeartbeatOptions {
  std::string router_address;      // host:port of the router's WorkerRegistry
  // The channel to the router: the cluster's credentials (ClusterSecurity).
  ChannelOptions router_channel;
  std::string worker_id;
  v1::WorkerRole role = v1::WORKER_ROLE_UNSPECIFIED;
  std::string advertised_address;  // host:port the router gives to others for this worker
  v1::KvLayoutInfo kv_layout;
  std::string model_name;
  // Registration attempts are this far apart while the router does not answer.
  std::chrono::milliseconds register_retry{200};
  // Start() gives up waiting for the first registration after this long.
  std::chrono::milliseconds register_timeout{30000};
  // Deadline of each RegisterWorker / Heartbeat call.
  std::chrono::milliseconds rpc_timeout{1000};
  // Used when the router answers heartbeat_interval_ms <= 0.
  std::chrono::milliseconds default_heartbeat_interval{1000};
};

// Returns the worker's load now; called on the heartbeat thread, so it must be thread-safe.
using WorkerLoadFn = std::function<v1::WorkerLoad()>;

class WorkerHeartbeat {
 public:
  WorkerHeartbeat(WorkerHeartbeatOptions options, WorkerLoadFn load);
  WorkerHeartbeat(const WorkerHeartbeat&) = delete;
  WorkerHeartbeat& operator=(const WorkerHeartbeat&) = delete;
  ~WorkerHeartbeat();  // Stop()

  // Starts the thread and waits until the router has accepted the registration: OK, or
  // DeadlineExceeded naming the router and the last error after register_timeout (the thread
  // keeps trying until Stop()), or refusal() when the router refused the worker (the thread has
  // ended). FailedPrecondition also when called twice or after Stop().
  absl::Status Start();
  // Ends the thread promptly (an RPC in flight is cancelled). Idempotent.
  void Stop();
  // Stop(), then tells the router that this worker is leaving (one Deregister call within
  // rpc_timeout, naming the worker's id and advertised address): it admits no new work to the
  // worker from then on. OK when the router answered, whether or not it still knew the worker;
  // the call's error otherwise (the router then drops the worker after its heartbeat timeout).
  absl::Status Deregister();

  const WorkerHeartbeatOptions& options() const { return options_; }
  bool registered() const { return registered_.load(); }
  // OK until the router refuses a registration; then FailedPrecondition naming the router, with
  // its message. Once set it stays: the heartbeat thread has ended and registered() is false.
  absl::Status refusal() const;
  int64_t n_registrations() const { return n_registrations_.load(); }  // accepted ones
  int64_t n_heartbeats() const { return n_heartbeats_.load(); }        // answered ones
  std::chrono::milliseconds heartbeat_interval() const;

 private:
  void Loop();
  // One RPC each; false when the router did not answer (or the call was cancelled by Stop()).
  // TryRegister sets refusal_ when the router refuses the worker.
  bool TryRegister();
  bool TryHeartbeat();  // sets registered_ = false when the router has forgotten this worker
  // Makes a context for one call and remembers it so that Stop() can cancel it.
  std::unique_ptr<grpc::ClientContext> NewContext();
  void ForgetContext();
  // Waits up to `d` or until Stop(); true when stopping.
  bool WaitOrStop(std::chrono::milliseconds d);

  const WorkerHeartbeatOptions options_;
  const WorkerLoadFn load_;
  std::unique_ptr<v1::WorkerRegistry::Stub> stub_;
  std::thread thread_;

  mutable std::mutex mutex_;
  std::condition_variable cv_;             // stop_, registered_ or refusal_ changed
  bool started_ = false;                   // guarded by mutex_
  bool stop_ = false;                      // guarded by mutex_
  grpc::ClientContext* in_flight_ = nullptr;  // guarded by mutex_
  std::string last_error_;                 // guarded by mutex_
  absl::Status refusal_;                   // guarded by mutex_
  std::chrono::milliseconds interval_;     // guarded by mutex_

  std::atomic<bool> registered_{false};
  std::atomic<int64_t> n_registrations_{0};
  std::atomic<int64_t> n_heartbeats_{0};
};

// A worker's main thread from "listening" to shutdown: waits for SIGINT/SIGTERM while
// `heartbeat` (null: no router) registers beside the wait, so that a signal during registration
// still stops the worker at once. Logs to stderr each time the router accepts the worker (at
// start-up, late, or again after a router restart); a registration that times out is logged
// (prefixed with `program`) and keeps trying in the background, as after a router restart: a
// worker started before its router joins when the router comes up. Stops the heartbeat before it
// returns the signal's number, or heartbeat->refusal() (FailedPrecondition) within about 100 ms of
// the router refusing the worker, at start-up or on a re-registration: the worker must not serve.
// The refusal is returned, not logged.
absl::StatusOr<int> WaitForShutdownWhileRegistering(const ShutdownSignals& signals,
                                                    WorkerHeartbeat* heartbeat,
                                                    const std::string& program);

}  // namespace pdserve::rpc
