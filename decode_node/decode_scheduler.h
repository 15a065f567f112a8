#pragma once
// The decode worker's continuous-batching scheduler: plain C++, no gRPC.
//
// A sequence arrives with its prompt ids (never recomputed here), reserves KV blocks for
// prompt + max_tokens up front, receives the prompt's KV and first token from a prefill worker
// through the transfer layer (this class is its KvReservationTable: a receive session opens the
// reservation with its one-time transfer token, checks and copies blocks outside mutex_, and
// commits them in short critical sections), then joins the running batch: every step runs ALL
// decoding sequences together as one ForwardPass::Forward call, one token each, and samples
// each with its own parameters at its own position, exactly as engine::Generate does.
// Sequences join and leave only between steps. Every block a sequence holds is freed when it
// ends, for any reason.
//
// A reservation awaiting KV is a lease (common/kv_transfer/kv_lease.h): when, once its KV has
// begun to arrive, none arrives for SchedulerOptions::kv_lease.idle, or the handoff takes longer
// than kv_lease.max, the sequence fails (ABORTED) and its blocks return to the pool.
//
// Reservations wait for blocks in one FIFO, bounded by SchedulerOptions::max_waiting_reservations
// (past it: ResourceExhausted at once). Whenever blocks return to the pool, the waiters at the
// head that now fit are granted, in arrival order; a waiter behind one that does not fit waits
// (no overtaking, so a large request is never starved). Nothing polls: the scheduler thread
// sleeps until a sequence is ready or the earliest timer (a waiter's or a call's deadline, a
// lease, a stalled consumer's timeout, a quarantine) is due.
//
// Consumers are either callbacks (StartReserve: the Decode stream's reactor; no thread per
// sequence) or a blocking thread (Reserve + WaitEvents: tests and tools). A sequence whose
// consumer leaves SchedulerOptions::max_undelivered_tokens tokens untaken leaves the batch
// (kStalled, blocks kept), rejoins when they are taken, and is cancelled (ABORTED) after
// stalled_stream_timeout.
//
// Thread model: one scheduler thread runs the steps and the timers; any thread may call the
// public methods. Lock order: mutex_ only (the pool has its own internal lock, taken under
// mutex_). Callbacks are never invoked under mutex_: they are queued under it and run once it is
// released, so a callback may call back into the scheduler. Block bytes are never copied under
// mutex_: the step runs without it, and receive sessions copy between Pin and Unpin, during which
// the sequence's blocks cannot be freed.

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "common/engine/forward_pass.h"
#include "common/kv/kv_block_pool.h"
#include "common/kv_transfer/kv_lease.h"
#include "common/kv_transfer/reservation_table.h"
#include "common/model/model_weights.h"
#include "common/request/request_contract.h"
#include "common/sampling/sampler.h"

namespace pdserve::decode {

// The lifecycle of one sequence on this worker.
enum class SequenceState {
  kWaitingForBlocks,  // in the FIFO of reservations waiting for KV blocks (bounded by its deadline)
  kAwaitingKv,        // blocks reserved; the prompt's KV and first token are being received
  kReady,             // KV complete; waiting to join the batch at the next step boundary
  kDecoding,          // in the running batch, one token per step
  kStalled,           // out of the batch, blocks kept: its consumer has not taken
                      // max_undelivered_tokens tokens; rejoins (kReady) once they are taken
  kFinished,          // ended normally ("length" or "eos"); blocks freed
  kCancelled,         // the caller went away or its deadline passed; blocks freed
  kFailed,            // bad KV or an internal error; blocks freed, the error is reported
};
const char* SequenceStateName(SequenceState state);

struct DecodeSpec {
  std::string request_id;
  std::vector<int32_t> prompt_ids;  // non-empty; their KV comes from prefill
  int64_t max_tokens = 16;          // >= 1, counting the first token (made by prefill)
  sampling::SamplingParams sampling;
  bool ignore_eos = false;
};

// What the consumer of a sequence sees, in order: tokens with index >= 1, then exactly one
// terminal event (finished or error).
struct SequenceEvent {
  enum class Kind { kToken, kFinished, kError };
  Kind kind = Kind::kToken;
  int32_t token_id = 0;     // kToken
  int64_t index = 0;        // kToken: 0 is the first token (from prefill, never sent here)
  request::FinishReason finish_reason = request::FinishReason::kLength;  // kFinished: length | eos
  int64_t completion_tokens = 0;      // kFinished: output tokens, counting index 0
  int64_t prompt_tokens_computed = 0; // kFinished: prompt positions this worker ran (0)
  absl::Status error;                 // kError
};

// A reservation as Reserve answers it: what the handoff to the prefill worker needs.
struct Reservation {
  int64_t n_blocks = 0;                   // reserved for prompt + max_tokens
  std::string transfer_token;             // one-time; opens the reservation for KV
  std::vector<kv::BlockId> prompt_blocks;  // where the prompt's blocks go, in order
  absl::Time lease_expiry;                 // the lease's hard deadline
};

// queue_length: reservations waiting for blocks; active_sequences: reserved and not ended
// (awaiting KV, ready, decoding, stalled).
struct SchedulerLoad : request::WorkerLoad {
  int64_t quarantined_kv_blocks = 0;  // not free yet (SchedulerOptions::kv_quarantine)
};

// What the scheduler reports as it works (DecodeMetrics exports it to Prometheus). Called on
// the scheduler's threads, under its mutex: must be cheap, must not block and must not call the
// scheduler.
class SchedulerObserver {
 public:
  virtual ~SchedulerObserver() = default;
  // A decode step's forward pass took `forward_time` and `n_tokens` sequences sampled a token
  // from it (an end token included).
  virtual void OnStep(absl::Duration forward_time, int64_t n_tokens) = 0;
  // A sequence that held a reservation ended in `state` (terminal); `reason` for kFinished.
  virtual void OnSequenceEnd(SequenceState state, request::FinishReason reason) = 0;
};

struct SchedulerOptions {
  int max_batch = 32;  // most sequences in one decode step
  // Each step lasts at least this long (the scheduler sleeps, without its lock, after a faster
  // one). 0 in production; tests slow a tiny model down with it so that behaviour that depends
  // on timing (joining mid-generation, a deadline passing while decoding) is observable.
  absl::Duration min_step_duration = absl::ZeroDuration();
  kv_transfer::KvLeaseOptions kv_lease;
  std::string model_fingerprint;  // of the model this worker runs; empty when unknown
  // When same-host senders write into the pool themselves (the shm transport): the blocks of a
  // reservation that ends before its KV completed wait this long before they return to the
  // pool, so that a sender still writing (it stops within its cancellation latency) cannot
  // write into another sequence's blocks. Zero: blocks return at once.
  absl::Duration kv_quarantine = absl::ZeroDuration();
  // Most reservations waiting for blocks at once; one more is ResourceExhausted at once (retry
  // later or elsewhere). A waiter costs no thread, but the 257th in line waits for 256 requests'
  // worth of blocks to come back, several whole generations at the default max_batch of 32:
  // past that the router does better to shed the request or try another worker.
  int max_waiting_reservations = 256;
  // A sequence with this many tokens its consumer has not taken leaves the batch until they are
  // taken (a Decode stream whose client stopped reading: gRPC flow control). 0: never.
  int max_undelivered_tokens = 8;
  // A sequence out of the batch for that reason this long is cancelled (ABORTED) and its blocks
  // are freed.
  absl::Duration stalled_stream_timeout = absl::Seconds(30);
  SchedulerObserver* observer = nullptr;  // not owned, outlives the scheduler; null: none
};

// Called with the answer to a reservation: the reservation, or why there is none
// (DeadlineExceeded, Unavailable when the worker stops, an internal error).
using ReservedCallback = std::function<void(absl::StatusOr<Reservation>)>;
// Called when the sequence has an event to take (TakeEvent). Spurious calls are allowed.
using EventsCallback = std::function<void()>;

struct ReserveCall {
  DecodeSpec spec;
  // Waiting for blocks ends here (DeadlineExceeded through on_reserved).
  absl::Time reserve_deadline = absl::InfiniteFuture();
  // The sequence ends here whatever its state (a kError event with DeadlineExceeded).
  absl::Time deadline = absl::InfiniteFuture();
  // Called exactly once, outside the scheduler's lock (possibly before StartReserve returns, on
  // the calling thread), unless StartReserve fails or Release comes first. Required.
  ReservedCallback on_reserved;
  // May be empty (the consumer uses WaitEvents). Not called for calls that begin after Release
  // returns, but one already under way may still run: capture shared state that outlives the
  // consumer, never a raw pointer to it.
  EventsCallback on_events;
};

class DecodeScheduler final : public kv_transfer::KvReservationTable {
 public:
  // All references must outlive the scheduler; `forward` must run over `pool`. `end_ids` are the
  // tokenizer's end-of-generation ids. Starts the scheduler thread.
  DecodeScheduler(const model::ModelConfig& config, kv::KvBlockPool& pool,
                  engine::ForwardPass& forward, std::vector<int32_t> end_ids,
                  SchedulerOptions options);
  ~DecodeScheduler() override;  // stops the thread; every sequence still held is cancelled
  DecodeScheduler(const DecodeScheduler&) = delete;
  DecodeScheduler& operator=(const DecodeScheduler&) = delete;

  // Validates the spec (request::CheckSequenceRequest) and asks for
  // ceil((prompt + max_tokens) / block_size) blocks, all or nothing. Fails at once with
  // InvalidArgument for a bad spec, AlreadyExists for a request id in use, ResourceExhausted when
  // the blocks can never fit the pool or max_waiting_reservations are already waiting,
  // Unavailable when stopping. Otherwise OK, and call.on_reserved answers later (or at once):
  // the sequence is then kAwaitingKv and its lease starts.
  absl::Status StartReserve(ReserveCall call);

  // StartReserve for a blocking caller: waits for the answer until `deadline`
  // (DeadlineExceeded) or `is_cancelled()` (Cancelled; polled every few ms).
  absl::StatusOr<Reservation> Reserve(const DecodeSpec& spec, absl::Time deadline,
                                      const std::function<bool()>& is_cancelled);

  // kv_transfer::KvReservationTable (the contract is in reservation_table.h). Complete makes
  // the sequence kReady, or ends it at once when the first token is an end token (and
  // !ignore_eos) or max_tokens is 1.
  const kv::KvLayout& layout() const override { return pool_.layout(); }
  const std::string& model_fingerprint() const override { return options_.model_fingerprint; }
  absl::StatusOr<kv_transfer::ReservationView> Lookup(absl::string_view token) override;
  absl::Status Pin(absl::string_view token, absl::Span<const int64_t> indices) override;
  absl::Status Unpin(absl::string_view token, absl::Span<const int64_t> indices,
                     absl::Status verdict) override;
  absl::Status Complete(absl::string_view token, int32_t first_token) override;
  void Fail(absl::string_view token, const absl::Status& error) override;

  // The oldest event of `request_id` not taken yet, if any. Taking the last undelivered token
  // of a kStalled sequence puts it back in line for the batch.
  std::optional<SequenceEvent> TakeEvent(const std::string& request_id);
  // Waits until `request_id` has events or `until` passes; moves them into `events`. A sequence
  // awaiting KV whose lease ran out fails here (its kError event is among `events`).
  // NotFound for an unknown request.
  absl::Status WaitEvents(const std::string& request_id, absl::Time until,
                          std::vector<SequenceEvent>* events);
  // The consumer is done with the sequence: a waiting reservation leaves the FIFO, a sequence
  // that has not ended is cancelled (it leaves the batch at the next step boundary and its
  // blocks are freed), and it is forgotten; its callbacks are not called again. Safe to call
  // twice.
  void Release(const std::string& request_id);

  SequenceState StateOf(const std::string& request_id) const;  // kCancelled when unknown
  SchedulerLoad Load() const;
  const SchedulerOptions& options() const { return options_; }
  // Prompt positions this worker ever ran through the model: stays 0 (prompts come as KV).
  int64_t prompt_tokens_computed() const;
  // Largest batch any step ran so far.
  int64_t max_batch_seen() const;

 private:
  struct Sequence;
  class LockAndNotify;
  struct Quarantined {
    absl::Time until;
    std::vector<kv::BlockId> blocks;
  };

  void Run();  // the scheduler thread
  // Runs the callbacks queued under mutex_ with it released, then takes it again.
  void RunCallbacksLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  // Ends what is due at `now` (waiters' deadlines, leases, call deadlines, stalled consumers,
  // quarantines); returns when the next timer is due.
  absl::Time ExpireLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  // Grants the waiters at the head of the FIFO that fit, in order.
  void GrantWaitersLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  // `seq` holds its blocks: makes it kAwaitingKv with a lease and a transfer token.
  Reservation GrantLocked(Sequence& seq) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  // Takes `seq` out of the FIFO and forgets it; answers `answer` unless it is OK.
  void DropWaiterLocked(const std::shared_ptr<Sequence>& seq, absl::Status answer)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  void NotifyLocked(Sequence& seq) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  // Ends `seq` in `state` (terminal), frees its blocks unless a step is using them (then the
  // scheduler thread frees them after the step) and queues the terminal event.
  void EndLocked(Sequence& seq, SequenceState state, SequenceEvent event)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  void FreeBlocksLocked(Sequence& seq) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  // Returns the quarantined blocks whose time is up to the pool; true when some were.
  bool ReleaseQuarantinedLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  absl::Status FailLocked(Sequence& seq, absl::Status error) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  // The sequence `token` opens: PermissionDenied when none does.
  absl::StatusOr<std::shared_ptr<Sequence>> FindByTokenLocked(absl::string_view token)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  // As FindByTokenLocked, and FailedPrecondition unless the sequence awaits KV.
  absl::StatusOr<std::shared_ptr<Sequence>> AwaitingKvLocked(absl::string_view token)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  // Fails `seq` when it awaits KV and its lease ran out at `now`; the lease's status, or OK.
  absl::Status CheckLeaseLocked(Sequence& seq, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  // The token stops opening anything once the sequence no longer awaits KV and no session
  // holds a pin; the last pin out frees an ended sequence's blocks.
  void ForgetTokenIfDoneLocked(Sequence& seq) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  void FinishLocked(Sequence& seq, request::FinishReason reason) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  bool IsEndToken(int32_t token) const;

  const model::ModelConfig& config_;
  kv::KvBlockPool& pool_;
  engine::ForwardPass& forward_;
  const std::vector<int32_t> end_ids_;
  const SchedulerOptions options_;

  mutable absl::Mutex mutex_;
  // The scheduler thread: a sequence became ready, a timer was added, or stop.
  absl::CondVar work_cv_;
  // Blocking consumers (WaitEvents): events were queued. No production path waits on it.
  absl::CondVar events_cv_;
  bool stop_ ABSL_GUARDED_BY(mutex_) = false;
  std::map<std::string, std::shared_ptr<Sequence>> sequences_ ABSL_GUARDED_BY(mutex_);
  // Sequences by transfer token, while awaiting KV or pinned by a receive session.
  std::map<std::string, std::shared_ptr<Sequence>, std::less<>> by_token_
      ABSL_GUARDED_BY(mutex_);
  std::deque<std::shared_ptr<Sequence>> waiting_ ABSL_GUARDED_BY(mutex_);  // FIFO for blocks
  std::deque<std::shared_ptr<Sequence>> ready_ ABSL_GUARDED_BY(mutex_);    // kReady, in order
  std::vector<std::shared_ptr<Sequence>> running_ ABSL_GUARDED_BY(mutex_);  // the batch
  // Blocks of reservations that ended before their KV completed, oldest first.
  std::deque<Quarantined> quarantined_ ABSL_GUARDED_BY(mutex_);
  // Callbacks to run once mutex_ is released (RunCallbacksLocked).
  std::vector<std::function<void()>> pending_callbacks_ ABSL_GUARDED_BY(mutex_);
  int64_t prompt_tokens_computed_ ABSL_GUARDED_BY(mutex_) = 0;
  int64_t max_batch_seen_ ABSL_GUARDED_BY(mutex_) = 0;
  std::thread thread_;
};

}  // namespace pdserve::decode
