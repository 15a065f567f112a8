#pragma once
// Whether a worker still takes new work. A worker that drains before it exits (SIGTERM:
// cli::ServeWorkerUntilSignal) closes its gate; from then on each service refuses new work
// (Prefill, Decode) with UNAVAILABLE, which the router's relay answers by trying another worker,
// while the calls that finish work already taken (KvReceiver.PushKv for a reservation made
// before, streams in flight) go on. A service checks it as its handler's first line:
//   if (absl::Status s = AdmitNewWork(gate); !s.ok()) return Reject...(ToGrpcStatus(s));
//
// Thread-safe and lock-free; header-only, so that services need no library for it.

#include <atomic>

#include "absl/status/status.h"

namespace pdserve::rpc {

class DrainGate {
 public:
  // Once closed, the gate stays closed (a draining process never takes work again).
  void Close() { closed_.store(true, std::memory_order_release); }
  bool closed() const { return closed_.load(std::memory_order_acquire); }

 private:
  std::atomic<bool> closed_{false};
};

// OK while `gate` is open or null (a service built without one); UNAVAILABLE once it is closed.
inline absl::Status AdmitNewWork(const DrainGate* gate) {
  if (gate == nullptr || !gate->closed()) return absl::OkStatus();
  return absl::UnavailableError(
      "this worker is draining before it shuts down and takes no new work: try another worker");
}

}  // namespace pdserve::rpc
