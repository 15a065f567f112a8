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
// Thread model: one scheduler thread runs the steps; any thread may call the public methods.
// Lock order: mutex_ only (the pool has its own internal lock, taken under mutex_). Block bytes
// are never copied under mutex_: the step runs without it, and receive sessions copy between
// Pin and Unpin, during which the sequence's blocks cannot be freed.

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "common/engine/forward_pass.h"
#include "common/kv/kv_block_pool.h"
#include "common/kv_transfer/kv_lease.h"
#include "common/kv_transfer/reservation_table.h"
#include "common/model/model_weights.h"
#include "common/sampling/sampler.h"

namespace pdserve::decode {

// The lifecycle of one sequence on this worker.
enum class SequenceState {
  kWaitingForBlocks,  // Reserve is waiting for enough free KV blocks (bounded by its deadline)
  kAwaitingKv,        // blocks reserved; the prompt's KV and first token are being received
  kReady,             // KV complete; waiting to join the batch at the next step boundary
  kDecoding,          // in the running batch, one token per step
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
  std::string finish_reason;          // kFinished: "length" | "eos"
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

struct SchedulerLoad {
  int64_t queue_length = 0;       // sequences waiting for blocks
  int64_t active_sequences = 0;   // reserved and not ended (awaiting KV, ready or decoding)
  int64_t free_kv_blocks = 0;
  int64_t total_kv_blocks = 0;
  int64_t quarantined_kv_blocks = 0;  // not free yet (SchedulerOptions::kv_quarantine)
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

  // Validates the spec and reserves ceil((prompt + max_tokens) / block_size) blocks, all or
  // nothing. InvalidArgument for a bad spec; AlreadyExists for a request id in use;
  // ResourceExhausted at once when the blocks can never fit the pool; otherwise waits for room
  // until `deadline` (DeadlineExceeded) or `is_cancelled()` (Cancelled), polled every few ms.
  // The sequence is then kAwaitingKv and its lease starts.
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

  // Waits until `request_id` has events or `until` passes; moves them into `events`. A sequence
  // awaiting KV whose lease ran out fails here (its kError event is among `events`).
  // NotFound for an unknown request.
  absl::Status WaitEvents(const std::string& request_id, absl::Time until,
                          std::vector<SequenceEvent>* events);
  // The consumer is done with the sequence: cancels it if it has not ended (it leaves the batch
  // at the next step boundary and its blocks are freed) and forgets it. Safe to call twice.
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

  void Run();  // the scheduler thread
  // Ends `seq` in `state` (terminal), frees its blocks unless a step is using them (then the
  // scheduler thread frees them after the step) and queues the terminal event. mutex_ held.
  void EndLocked(Sequence& seq, SequenceState state, SequenceEvent event);
  void FreeBlocksLocked(Sequence& seq);
  // Returns the quarantined blocks whose time is up to the pool. Requires mutex_.
  void ReleaseQuarantinedLocked(absl::Time now) const;
  absl::Status FailLocked(Sequence& seq, absl::Status error);
  // The sequence `token` opens: PermissionDenied when none does. Requires mutex_.
  absl::StatusOr<std::shared_ptr<Sequence>> FindByTokenLocked(absl::string_view token);
  // As FindByTokenLocked, and FailedPrecondition unless the sequence awaits KV. Requires mutex_.
  absl::StatusOr<std::shared_ptr<Sequence>> AwaitingKvLocked(absl::string_view token);
  // Fails `seq` when it awaits KV and its lease ran out at `now`; the lease's status, or OK.
  absl::Status CheckLeaseLocked(Sequence& seq, absl::Time now);
  // The token stops opening anything once the sequence no longer awaits KV and no session
  // holds a pin; the last pin out frees an ended sequence's blocks.
  void ForgetTokenIfDoneLocked(Sequence& seq);
  void FinishLocked(Sequence& seq, const char* reason);
  bool IsEndToken(int32_t token) const;

  const model::ModelConfig& config_;
  kv::KvBlockPool& pool_;
  engine::ForwardPass& forward_;
  const std::vector<int32_t> end_ids_;
  const SchedulerOptions options_;

  mutable std::mutex mutex_;
  std::condition_variable work_cv_;    // scheduler thread: a sequence became ready, or stop
  // Consumers: events queued; Reserve: blocks freed. Mutable: Load() may release blocks.
  mutable std::condition_variable events_cv_;
  bool stop_ = false;                                         // guarded by mutex_
  std::map<std::string, std::shared_ptr<Sequence>> sequences_;  // guarded by mutex_
  // Sequences by transfer token, while awaiting KV or pinned by a receive session.
  std::map<std::string, std::shared_ptr<Sequence>, std::less<>> by_token_;  // guarded by mutex_
  std::deque<std::shared_ptr<Sequence>> ready_;               // kReady, arrival order
  std::vector<std::shared_ptr<Sequence>> running_;            // kDecoding (scheduler thread)
  int64_t n_waiting_for_blocks_ = 0;                          // guarded by mutex_
  struct Quarantined {
    absl::Time until;
    std::vector<kv::BlockId> blocks;
  };
  // Blocks of reservations that ended before their KV completed, oldest first. Mutable: Load()
  // releases what is due.
  mutable std::deque<Quarantined> quarantined_;                // guarded by mutex_
  int64_t prompt_tokens_computed_ = 0;                        // guarded by mutex_
  int64_t max_batch_seen_ = 0;                                // guarded by mutex_
  std::thread thread_;
};

}  // namespace pdserve::decode
