#pragma once
// The router's view of its workers: who registered, where they listen, their KV layout and
// their load as of the last heartbeat. A worker is out of rotation (healthy = false) while its
// last heartbeat is older than the timeout, or from the moment a call to it failed as
// unreachable (MarkUnreachable) until its next heartbeat or registration: a dead worker leaves
// at once rather than after its heartbeats stop, and a live one rejoins within an interval. A
// worker that says it is leaving (Deregister) is removed outright.
//
// Thread-safe: every method takes the registry's one mutex.

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common.pb.h"
#include "router.pb.h"
#include "router/router_model.h"

namespace pdserve::router {

// Injectable so that tests can move time by hand.
using Clock = std::function<absl::Time()>;

struct WorkerRegistration {
  std::string worker_id;
  v1::WorkerRole role = v1::WORKER_ROLE_UNSPECIFIED;
  std::string address;  // host:port
  v1::WorkerLoad load;
  v1::KvLayoutInfo kv_layout;  // decode workers: block_size must be >= 1
  std::string model_name;      // the worker's model file name (for messages)
};

// One worker as the selection rules see it.
struct WorkerSnapshot {
  std::string worker_id;
  v1::WorkerRole role = v1::WORKER_ROLE_UNSPECIFIED;
  std::string address;
  bool healthy = false;
  v1::WorkerLoad load;  // as of the last heartbeat
  v1::KvLayoutInfo kv_layout;
  std::string model_name;
  double seconds_since_heartbeat = 0;
  // Requests the router sent since the last heartbeat (the load report does not count them yet).
  int64_t dispatched_since_heartbeat = 0;
  // KV blocks those requests reserve (decode workers).
  int64_t blocks_dispatched_since_heartbeat = 0;
  // KV blocks of the router's requests that ended since the last heartbeat (decode workers):
  // free again, though the load report does not say so yet.
  int64_t blocks_released_since_heartbeat = 0;

  v1::WorkerInfo ToProto() const;
};

class WorkerRegistry {
 public:
  // Workers must match `model` (the router's own; the default checks nothing).
  WorkerRegistry(absl::Duration heartbeat_timeout, Clock clock, ModelIdentity model = {});

  // Adds the worker or replaces its earlier registration (a restarted worker). InvalidArgument
  // naming the field for an empty id or address, an unspecified role, or a decode worker without
  // a KV block size. FailedPrecondition, naming both sides, for a worker that cannot share KV
  // blocks with the others, which a retry will not fix:
  //   - its kv_layout.model_fingerprint differs from the model's fingerprint;
  //   - its n_layers, n_kv_heads or head_dim differ from the model's;
  //   - its block_size or dtype differ from those of another registered worker that is healthy
  //     (so the first to register fixes them while it stays healthy; once every other is stale,
  //     a worker with other values may join, e.g. a cluster restarted with a new block size).
  // A field left empty or 0, by the worker or the model, is not checked: fake workers in tests
  // and workers built before fingerprints register without one.
  absl::Status Register(const WorkerRegistration& registration);

  // Records the load and marks the worker alive. False when the worker is not registered (it
  // should register again).
  bool Heartbeat(const std::string& worker_id, const v1::WorkerLoad& load);

  // Counts a request the router sends to the worker until its next heartbeat reports it.
  void NoteDispatched(const std::string& worker_id, int64_t kv_blocks);

  // A request the router sent ended; its `kv_blocks` are free again on the worker.
  void NoteReleased(const std::string& worker_id, int64_t kv_blocks);

  // Runs after every heartbeat and registration (outside the registry's lock), when free
  // capacity may have changed: the relay admits queued requests then. One listener.
  void SetCapacityListener(std::function<void()> listener);
  // Runs after every successful registration (outside the registry's lock) with the worker's
  // address: a worker that registers is a process that is listening now, so a channel to that
  // address still backing off from an earlier process's death can be replaced. One listener.
  void SetRegistrationListener(std::function<void(const std::string& address)> listener);

  // A call to the worker failed as if it were gone (UNAVAILABLE): out of rotation until it
  // heartbeats or registers again. Unknown ids are ignored.
  void MarkUnreachable(const std::string& worker_id);

  // The worker is leaving (it drains before it exits): it leaves the registry at once, so no new
  // work goes to it; requests already sent to it go on. Its next Heartbeat returns false, so only
  // a new registration brings it back. With a non-empty `address`, only a registration at that
  // address is removed (a newer process under the same id stays). False when nothing was removed.
  bool Deregister(const std::string& worker_id, const std::string& address);

  // Every registered worker, ordered by id.
  std::vector<WorkerSnapshot> Snapshot() const;

  absl::Duration heartbeat_timeout() const { return heartbeat_timeout_; }

 private:
  struct Entry {
    WorkerRegistration registration;
    absl::Time last_heartbeat;
    int64_t dispatched_since_heartbeat = 0;
    int64_t blocks_dispatched_since_heartbeat = 0;
    int64_t blocks_released_since_heartbeat = 0;
    bool unreachable = false;  // since a failed call, until the next heartbeat
  };

  // FailedPrecondition when `registration` may not join (see Register).
  absl::Status CheckCompatible(const WorkerRegistration& registration, absl::Time now) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const absl::Duration heartbeat_timeout_;
  const Clock clock_;
  const ModelIdentity model_;
  mutable absl::Mutex mu_;
  std::map<std::string, Entry> workers_ ABSL_GUARDED_BY(mu_);
  absl::Mutex listener_mu_;  // taken without mu_
  std::function<void()> capacity_listener_ ABSL_GUARDED_BY(listener_mu_);
  std::function<void(const std::string&)> registration_listener_ ABSL_GUARDED_BY(listener_mu_);
  void NotifyCapacity();
};

}  // namespace pdserve::router
