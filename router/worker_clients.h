#pragma once
// What the relay (router/relay.h) needs of the workers: start a Prefill call, start and read a
// Decode stream, cancel either. Asynchronous, so that no router thread waits on a worker: every
// result comes back through a callback. The gRPC implementations are in
// router/grpc_worker_clients.h; tests use in-memory fakes (tests/router/fake_workers.h).
//
// Callback contract, for every implementation: a callback may run on any thread, including
// inline inside the call that started the operation, so a caller never holds a lock its callback
// takes. Each callback runs exactly once per operation, as documented below.

#include <functional>
#include <memory>
#include <optional>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "router/worker_registry.h"
#include "worker.pb.h"

namespace pdserve::router {

// A call in flight that the relay may abandon. Cancel is thread-safe, may come at any time
// (also after the call ended: then it does nothing), and makes the call end soon with CANCELLED
// unless it has already ended otherwise.
class CancellableCall {
 public:
  virtual ~CancellableCall() = default;
  virtual void Cancel() = 0;
};

class PrefillClient {
 public:
  using Done = std::function<void(absl::StatusOr<v1::PrefillResponse>)>;
  virtual ~PrefillClient() = default;
  // Runs PrefillWorker.Prefill on `worker` with `deadline`; `done` gets the response, or the
  // worker's status (code kept, message naming nothing: the relay names the worker). The handle
  // may be dropped at any time; the call still ends and `done` still runs.
  virtual std::unique_ptr<CancellableCall> Prefill(const WorkerSnapshot& worker,
                                                   const v1::PrefillRequest& request,
                                                   absl::Time deadline, Done done) = 0;
};

// One DecodeWorker.Decode stream, read one event at a time: the relay asks for the next event
// only when it has room for it, so a client that reads slowly slows the worker stream down
// (gRPC flow control) instead of filling the router's memory.
class DecodeStream : public CancellableCall {
 public:
  // Asks for the next event. At most one Read is outstanding; never called after a read
  // delivered the stream's end.
  virtual void Read() = 0;
};

// What a decode stream delivers: one callback per Read, carrying the event or the stream's end
// with its status (OK after `finished`, or the worker's error; CANCELLED after Cancel).
struct DecodeStreamResult {
  std::optional<v1::DecodeEvent> event;  // empty: the stream ended
  absl::Status end_status;               // when `event` is empty
};

class DecodeClient {
 public:
  using OnResult = std::function<void(DecodeStreamResult)>;
  virtual ~DecodeClient() = default;
  // Starts DecodeWorker.Decode on `worker` with `deadline` and reads its first event (the
  // reservation): `on_result` runs once for that read and once for every later Read. Dropping
  // the stream cancels the call; a result already under way may still arrive after that.
  virtual std::unique_ptr<DecodeStream> Decode(const WorkerSnapshot& worker,
                                               const v1::DecodeRequest& request,
                                               absl::Time deadline, OnResult on_result) = 0;
};

}  // namespace pdserve::router
