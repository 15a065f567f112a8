#pragma once
// The decode worker's continuous-batching scheduler: plain C++, no gRPC.
//
// A sequence arrives with its prompt ids (never recomputed here), reserves KV blocks for
// prompt + max_tokens up front, receives the prompt's KV and first token from a prefill worker
// (InstallKv / CompleteKv), then joins the running batch: every step runs ALL decoding sequences
// together as one ForwardPass::Forward call, one token each, and samples each with its own
// parameters at its own position, exactly as engine::Generate does. Sequences join and leave only
// between steps. Every block a sequence holds is freed when it ends, for any reason.
//
// Thread model: one scheduler thread runs the steps; any thread may call the public methods.
// Lock order: mutex_ only (the pool has its own internal lock, taken under mutex_).

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

// One received block, already separated from its wire message. `data` is only read during the
// call.
struct ReceivedBlock {
  int64_t index = 0;
  int64_t n_tokens = 0;
  absl::Span<const uint8_t> data;
  uint64_t checksum = 0;  // XXH3-64, seed 0, of data
};

struct SchedulerLoad {
  int64_t queue_length = 0;       // sequences waiting for blocks
  int64_t active_sequences = 0;   // reserved and not ended (awaiting KV, ready or decoding)
  int64_t free_kv_blocks = 0;
  int64_t total_kv_blocks = 0;
};

struct SchedulerOptions {
  int max_batch = 32;  // most sequences in one decode step
  // Each step lasts at least this long (the scheduler sleeps, without its lock, after a faster
  // one). 0 in production; tests slow a tiny model down with it so that behaviour that depends
  // on timing (joining mid-generation, a deadline passing while decoding) is observable.
  absl::Duration min_step_duration = absl::ZeroDuration();
};

class DecodeScheduler {
 public:
  // All references must outlive the scheduler; `forward` must run over `pool`. `end_ids` are the
  // tokenizer's end-of-generation ids. Starts the scheduler thread.
  DecodeScheduler(const model::ModelConfig& config, kv::KvBlockPool& pool,
                  engine::ForwardPass& forward, std::vector<int32_t> end_ids,
                  SchedulerOptions options);
  ~DecodeScheduler();  // stops the thread; every sequence still held is cancelled
  DecodeScheduler(const DecodeScheduler&) = delete;
  DecodeScheduler& operator=(const DecodeScheduler&) = delete;

  // Validates the spec and reserves ceil((prompt + max_tokens) / block_size) blocks, all or
  // nothing. InvalidArgument for a bad spec; AlreadyExists for a request id in use;
  // ResourceExhausted at once when the blocks can never fit the pool; otherwise waits for room
  // until `deadline` (DeadlineExceeded) or `is_cancelled()` (Cancelled), polled every few ms.
  // Returns the number of blocks reserved; the sequence is then kAwaitingKv.
  absl::StatusOr<int64_t> Reserve(const DecodeSpec& spec, absl::Time deadline,
                                  const std::function<bool()>& is_cancelled);

  // Verifies received blocks and copies them into the sequence's reserved blocks. NotFound for
  // an unknown request; FailedPrecondition when it is not awaiting KV (neither fails it).
  // Otherwise any problem (n_prompt_tokens differing from the prompt, index out of range or
  // repeated, inconsistent n_tokens, wrong data size: InvalidArgument; checksum: DataLoss) fails
  // the sequence, frees its blocks and is returned.
  absl::Status InstallKv(const std::string& request_id, int64_t n_prompt_tokens,
                         absl::Span<const ReceivedBlock> blocks);
  // The last chunk: every prompt block must have arrived (else InvalidArgument, failing the
  // sequence) and `first_token` must be in the vocabulary. The sequence becomes kReady, or ends
  // at once when the first token is an end token (and !ignore_eos) or max_tokens is 1.
  absl::Status CompleteKv(const std::string& request_id, int32_t first_token);
  // Fails the sequence with `error` (e.g. a layout mismatch found by the receiver) and frees its
  // blocks. No-op for unknown or ended sequences.
  void Fail(const std::string& request_id, const absl::Status& error);

  // Waits until `request_id` has events or `until` passes; moves them into `events`.
  // NotFound for an unknown request.
  absl::Status WaitEvents(const std::string& request_id, absl::Time until,
                          std::vector<SequenceEvent>* events);
  // The consumer is done with the sequence: cancels it if it has not ended (it leaves the batch
  // at the next step boundary and its blocks are freed) and forgets it. Safe to call twice.
  void Release(const std::string& request_id);

  SequenceState StateOf(const std::string& request_id) const;  // kCancelled when unknown
  SchedulerLoad Load() const;
  const kv::KvLayout& layout() const { return pool_.layout(); }
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
  absl::Status FailLocked(Sequence& seq, absl::Status error);
  // The sequence `request_id` names, if it is awaiting KV: NotFound or FailedPrecondition else.
  // Requires mutex_.
  absl::StatusOr<std::shared_ptr<Sequence>> FindAwaitingKvLocked(const std::string& request_id);
  void FinishLocked(Sequence& seq, const char* reason);
  bool IsEndToken(int32_t token) const;

  const model::ModelConfig& config_;
  kv::KvBlockPool& pool_;
  engine::ForwardPass& forward_;
  const std::vector<int32_t> end_ids_;
  const SchedulerOptions options_;

  mutable std::mutex mutex_;
  std::condition_variable work_cv_;    // scheduler thread: a sequence became ready, or stop
  std::condition_variable events_cv_;  // consumers: events queued; Reserve: blocks freed
  bool stop_ = false;                                         // guarded by mutex_
  std::map<std::string, std::shared_ptr<Sequence>> sequences_;  // guarded by mutex_
  std::deque<std::shared_ptr<Sequence>> ready_;               // kReady, arrival order
  std::vector<std::shared_ptr<Sequence>> running_;            // kDecoding (scheduler thread)
  int64_t n_waiting_for_blocks_ = 0;                          // guarded by mutex_
  int64_t prompt_tokens_computed_ = 0;                        // guarded by mutex_
  int64_t max_batch_seen_ = 0;                                // guarded by mutex_
  std::thread thread_;
};

}  // namespace pdserve::decode
