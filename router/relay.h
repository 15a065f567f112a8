#pragma once
// The router's one request path: a client's GenerateRequest in, a stream of GenerateResponse
// out, whatever front (gRPC today, HTTP next) carries them. The relay checks and tokenizes the
// request, waits for a slot (bounded in-flight requests, then a bounded queue), reserves room on
// a decode worker, has a prefill worker run the prompt and ship its KV there, and relays every
// token to the client as text. It owns retries and failover:
//   - a prefill that fails as retryable is run again on another prefill worker, with the same
//     decode reservation while that holds;
//   - a decode worker lost before or during generation is replaced: the request runs again on
//     another decode worker, its prompt followed by the tokens already generated, and the
//     client's stream goes on after the tokens it has (no token repeated or lost);
//   - a worker whose call fails with UNAVAILABLE leaves rotation at once
//     (WorkerRegistry::MarkUnreachable).
// Retryable: UNAVAILABLE, RESOURCE_EXHAUSTED, ABORTED, and a worker's CANCELLED that the relay
// did not cause. Anything else (a refused request, a deadline) ends the request with the
// worker's status, naming the worker. Every failed request leaves one log line on stderr with
// its id, status and the workers involved.
//
// Request lifecycle (docs/reliability.md draws it):
//   kQueued      waiting in the router's queue for an in-flight slot and a decode worker with
//                room for it (admission feeds workers as they free up)
//   kReserving   Decode called; waiting for its `reserved`
//   kPrefilling  Prefill called with the reservation's handoff; waiting for the first token
//   kDecoding    relaying the decode worker's tokens
//   kBackoff     between attempts (every worker busy, or one just failed)
//   kDone        the sink was finished (once)
//
// Threading: no thread per request. Each request is a RelayCall whose every step runs in its
// own strand (one step at a time, on whichever thread delivered the event: a worker callback, a
// client write completion, a timer); no lock is held while calling a worker client or the sink.

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/request/request_contract.h"
#include "router.pb.h"
#include "router/router_model.h"
#include "router/router_stats.h"
#include "router/worker_clients.h"
#include "router/worker_registry.h"

namespace pdserve::router {

struct RelayOptions {
  // Upper bound on one request, queueing included, when the client sets no shorter deadline.
  absl::Duration max_request_time = absl::Minutes(10);
  // Requests served at once (reserving, prefilling or decoding); more wait in the queue. A
  // request also waits there until a decode worker has room for its KV blocks (as the router
  // reckons it: WorkerRegistry's load plus its own dispatches and releases since), so that
  // requests queue here, where the order is fair, rather than in the workers.
  int max_in_flight = 512;
  // Requests waiting for admission; more are refused at once with RESOURCE_EXHAUSTED. The
  // queue is fair between clients (each client key has its own FIFO; keys take turns), so one
  // client's flood does not starve another's request.
  int max_queued = 2048;
  // Messages a stream holds for a client that does not read; at this many the relay stops
  // reading the decode worker's stream, so the slowness reaches the decode worker (which takes
  // the sequence out of its batch) instead of the router's memory.
  int max_buffered_messages = 16;
  // A client whose stream stays full this long has stopped reading: the request ends (ABORTED)
  // and its decode sequence is cancelled, freeing its blocks.
  absl::Duration client_stall_timeout = absl::Seconds(30);
  // Attempts one request may make (first try and failovers together, a try that found no
  // healthy worker included); a busy worker's RESOURCE_EXHAUSTED counts against
  // max_busy_retries instead, each retry after a backoff, so that a burst is waited out rather
  // than returned to the client.
  int max_attempts = 6;
  int max_busy_retries = 30;
  // Wait before trying again when every worker of a role is busy (RESOURCE_EXHAUSTED) or
  // unreachable; doubles per attempt up to retry_backoff_max.
  absl::Duration retry_backoff = absl::Milliseconds(50);
  absl::Duration retry_backoff_max = absl::Seconds(1);
  // The retry hint a refused client gets (RelayRefusal's retry_after).
  absl::Duration retry_after = absl::Seconds(1);
};

// The client's side of one request, implemented by the front (the gRPC reactor; the HTTP
// server). The relay calls StartWrite for one message at a time and waits for the front to
// call RelayCall::OnWriteDone; then Finish exactly once, with no write outstanding. After Finish
// the relay never touches the sink again.
class ResponseSink {
 public:
  virtual ~ResponseSink() = default;
  virtual void StartWrite(const v1::GenerateResponse& response) = 0;
  // The request ended in error while a write is outstanding, which a client that stopped
  // reading may never complete: ends the client's stream at once, so that the write completes
  // (not ok) and Finish can follow. Thread-safe.
  virtual void CancelStream() = 0;
  // `retry_after`: for RESOURCE_EXHAUSTED from the router's own limits, how long the client
  // should wait before trying again (ZeroDuration otherwise).
  virtual void Finish(const absl::Status& status, absl::Duration retry_after) = 0;
};

class Relay;

// One request. Created by Relay::Start; lives while a worker call, a timer or the front holds
// it.
class RelayCall : public std::enable_shared_from_this<RelayCall> {
 public:
  // The front's events. Thread-safe; may come at any time, also after Finish (then ignored).
  void OnWriteDone(bool ok);
  void OnClientCancelled();

  ~RelayCall();

 private:
  friend class Relay;
  enum class State { kQueued, kReserving, kPrefilling, kDecoding, kBackoff, kDone };
  struct Attempt;

  RelayCall(Relay& relay, ResponseSink& sink, absl::Time arrival, absl::Time deadline,
            std::string client_key);

  // Runs `step` in this call's strand: after every step posted before it, never two at once.
  void Post(std::function<void()> step);

  // Steps (strand only).
  void Begin(absl::StatusOr<v1::GenerateRequest> request);
  // `decode`: the worker admission chose and charged `blocks` to (empty: none chosen).
  void Admitted(const WorkerSnapshot& decode, int64_t blocks);
  // The blocks this request's current decode reservation is charged with are free again.
  void ReleaseHeldBlocks();
  // The attempt's worker request id (unique: a retry gets ".<attempt>") and prompt: the
  // client's, followed by every token generated so far (a failover resumes after them).
  template <typename WorkerRequest>
  void FillAttempt(WorkerRequest& request) const;
  // Keeps `error` as the one to report if it tells at least as much as the one kept.
  void NoteError(const absl::Status& error, bool from_worker);
  // Counts the attempt about to start against its budget; false when that is spent.
  bool CountAttempt();
  void StartAttempt();
  void OnDecodeResult(int attempt_id, DecodeStreamResult result);
  void HandleDecodeEvent(const v1::DecodeEvent& event);  // kDecoding
  void StartPrefill();
  void OnPrefillDone(int attempt_id, const WorkerSnapshot& worker,
                     absl::StatusOr<v1::PrefillResponse> response);
  void HandleToken(int32_t token);
  void ReadDecodeIfRoom();
  // Arms the client stall timer while the outbox is full, disarms it when it is not.
  void WatchClientStall();
  void FailAttempt(const WorkerSnapshot& worker, absl::string_view role, absl::Status status,
                   bool reuse_reservation);
  void Backoff(std::function<void()> then);
  void Complete(request::FinishReason reason);
  void End(absl::Status status, absl::Duration retry_after = absl::ZeroDuration());
  void SendQueued();
  void CancelWorkerCalls();

  Relay& relay_;
  ResponseSink& sink_;
  const absl::Time arrival_;
  const absl::Time deadline_;
  const std::string client_key_;
  // prompt + max_tokens; set before the call is queued, read by admission under Relay::mu_.
  int64_t admission_tokens_ = 0;

  absl::Mutex strand_mu_;
  std::deque<std::function<void()>> strand_queue_ ABSL_GUARDED_BY(strand_mu_);
  bool strand_running_ ABSL_GUARDED_BY(strand_mu_) = false;

  // Strand-only state.
  struct StrandState;
  std::unique_ptr<StrandState> s_;
};

class Relay {
 public:
  // All references outlive the relay and every call it starts.
  Relay(const RouterModel& model, WorkerRegistry& registry, RouterStats& stats,
        PrefillClient& prefill, DecodeClient& decode, Clock clock, RelayOptions options = {});

  ~Relay();

  // Starts one request: `request` is the parsed GenerateRequest, or why it could not be parsed.
  // `client_deadline`: InfiniteFuture when the client set none. `client_key` names the client
  // for fair queueing (its API key, else its connection). `sink` must stay valid until the relay
  // has called its Finish; the front forwards its events to the returned call.
  std::shared_ptr<RelayCall> Start(absl::StatusOr<v1::GenerateRequest> request,
                                   ResponseSink& sink, absl::Time client_deadline,
                                   std::string client_key = "");

  // Requests being served, and waiting for a slot.
  int64_t in_flight() const;
  int64_t queued() const;
  const RelayOptions& options() const { return options_; }

 private:
  friend class RelayCall;

  // Queues `call` for admission (`call->Admitted` runs in its strand once it is admitted), or
  // refuses it (ResourceExhausted) when the queue is full.
  absl::Status Enqueue(const std::shared_ptr<RelayCall>& call);
  // Admits queued calls while there is a slot and room on a decode worker for the next one.
  // Runs whenever capacity may have grown: a call ended, a worker heartbeat or registered.
  void Pump();
  // A call that held a slot ended.
  void ReleaseSlot();
  // A queued call ended before it was admitted.
  void Dequeue(const RelayCall* call);
  std::string NextWorkerRequestId(const std::string& client_request_id);

  const RouterModel& model_;
  WorkerRegistry& registry_;
  RouterStats& stats_;
  PrefillClient& prefill_;
  DecodeClient& decode_;
  const Clock clock_;
  const RelayOptions options_;
  const std::string instance_id_;  // random, per router process: worker request ids never repeat
  std::atomic<int64_t> next_request_number_{1};

  mutable absl::Mutex mu_;  // before WorkerRegistry's
  int64_t in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  // The queue: a FIFO per client key, and the keys in turn order.
  std::map<std::string, std::deque<std::weak_ptr<RelayCall>>> queues_ ABSL_GUARDED_BY(mu_);
  std::deque<std::string> turns_ ABSL_GUARDED_BY(mu_);
  int64_t n_queued_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace pdserve::router
