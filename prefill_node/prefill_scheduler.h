#pragma once
// The prefill worker's logic, without gRPC: a bounded queue of prompts, executor threads that
// run each prompt through the engine in chunks of whole KV blocks and hand every chunk's
// finished blocks to the transfer layer (common/kv_transfer/handoff_sender.h) while the next
// chunk computes, and the first generated token: compute, then hand off.
//
// Lifecycle of a request (Job::State):
//   kQueued  — waiting in the bounded queue; a caller that gives up removes it at once.
//   kRunning — an executor owns it: blocks allocated, chunks computed and sent.
//   kDone    — status and outcome are set; the caller returns them.
// The request's KV blocks are taken on kRunning and returned to the pool before kDone, whatever
// the outcome.

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/request/request_contract.h"
#include "common/engine/engine.h"
#include "common/kv_transfer/handoff.h"
#include "common/kv_transfer/handoff_sender.h"
#include "common/kv_transfer/kv_send_stream.h"
#include "common/sampling/sampler.h"

namespace pdserve::prefill {

struct PrefillJob {
  std::string request_id;           // non-empty
  std::vector<int32_t> prompt_ids;  // non-empty, < context length, ids in the vocabulary
  sampling::SamplingParams sampling;
  // Where the KV goes: the decode worker's answer to the reservation, with request_id and
  // control_address (its KvReceiver) set.
  kv_transfer::Handoff handoff;
  absl::Time deadline = absl::InfiniteFuture();  // InfiniteFuture: none
  // Polled while the request waits or runs; true = the caller went away. May be empty.
  std::function<bool()> is_cancelled;
};

struct PrefillOutcome {
  int32_t first_token = 0;
  double queue_seconds = 0;    // enqueued → an executor took it
  double prefill_seconds = 0;  // time inside the forward pass
  int kv_blocks_sent = 0;
  kv_transfer::TransferReport transfer;
};

struct PrefillSchedulerOptions {
  int queue_capacity = 16;  // requests waiting (not counting those running); >= 0
  int n_executors = 1;      // >= 1; forward passes are serialized, sends overlap
  // A chunk is at most this many blocks and (when more than one block) at most this many
  // bytes of block data, so that a chunk message stays under gRPC's default 4 MiB receive
  // limit (SmolLM2 f32, 16-token blocks: 4 blocks = 2.8 MiB). A single block above the limit is
  // still sent alone: the decode worker must then accept larger messages.
  int max_chunk_blocks = 4;
  size_t max_chunk_bytes = size_t{3584} << 10;
  // Test hook, called on the executor thread before the forward pass of each chunk
  // (chunk_index counts from 0).
  std::function<void(const std::string& request_id, int chunk_index)> before_chunk;
  std::string model_fingerprint;  // of this worker's model; empty when unknown
};

using PrefillLoad = request::WorkerLoad;

class PrefillScheduler {
 public:
  // `engine` and `transports` must outlive the scheduler. Starts the executors.
  PrefillScheduler(engine::Engine& engine, kv_transfer::KvSendStreamFactory& transports,
                   PrefillSchedulerOptions options);
  PrefillScheduler(const PrefillScheduler&) = delete;
  PrefillScheduler& operator=(const PrefillScheduler&) = delete;
  ~PrefillScheduler();  // Shutdown()

  // InvalidArgument naming the problem, ResourceExhausted when the prompt can never fit this
  // worker's KV pool, FailedPrecondition when the handoff's layout or model differ from ours.
  absl::Status Validate(const PrefillJob& job) const;

  // Called exactly once with a started request's outcome, on an executor thread (or on the
  // thread of Cancel / Shutdown for work that never ran). Must not block.
  using PrefillDone = std::function<void(absl::StatusOr<PrefillOutcome>)>;
  using Ticket = uint64_t;  // names a started request for Cancel

  // Validates and queues (ResourceExhausted at once when the queue is full; InvalidArgument,
  // ... as Validate; Unavailable when shutting down): then `done` is called later. No thread
  // waits meanwhile; job.is_cancelled is not polled (call Cancel), job.deadline is checked
  // before each chunk.
  absl::StatusOr<Ticket> StartPrefill(PrefillJob job, PrefillDone done);
  // The caller gave up with `reason`: queued work is dropped (done(reason) at once), running work
  // stops at the next chunk and its KV handoff is cancelled (done(reason) once it has). No-op
  // for a ticket already done.
  void Cancel(Ticket ticket, const absl::Status& reason);

  // StartPrefill for a blocking caller: waits for the outcome and returns the first token. A caller that is cancelled or passes its deadline
  // gets Cancelled / DeadlineExceeded; its queued work is dropped, its running work stopped at
  // the next chunk and its KV handoff cancelled. Errors of the decode worker name its address.
  absl::StatusOr<PrefillOutcome> Prefill(PrefillJob job);

  // Fails queued requests with Unavailable, stops running ones, joins the executors.
  // Idempotent.
  void Shutdown();

  PrefillLoad load() const;
  // Blocks per chunk for this engine's layout.
  int chunk_blocks() const { return chunk_blocks_; }

 private:
  struct Job;

  void ExecutorLoop();
  absl::StatusOr<PrefillOutcome> RunJob(Job& job);
  // The reason to stop `job` now, or OK to go on.
  absl::Status StopReason(const Job& job) const;
  absl::StatusOr<std::vector<kv::BlockId>> AllocateBlocks(const Job& job, int64_t n_blocks);
  void FreeBlocks(const std::vector<kv::BlockId>& blocks);

  engine::Engine& engine_;
  kv_transfer::KvSendStreamFactory& transports_;
  const PrefillSchedulerOptions options_;
  const int chunk_blocks_;

  // Lock order: mutex_, then a Job's sender_mutex. forward_mutex_ is never held with another.
  mutable absl::Mutex mutex_;
  absl::CondVar work_cv_;    // queue_ or stopping_ changed
  absl::CondVar blocks_cv_;  // blocks went back to the pool
  Ticket next_ticket_ ABSL_GUARDED_BY(mutex_) = 1;
  std::deque<std::shared_ptr<Job>> queue_ ABSL_GUARDED_BY(mutex_);
  std::vector<std::shared_ptr<Job>> running_ ABSL_GUARDED_BY(mutex_);
  bool stopping_ ABSL_GUARDED_BY(mutex_) = false;
  absl::Mutex forward_mutex_;  // one forward pass at a time on the engine's thread pool
  std::vector<std::thread> executors_;
};

}  // namespace pdserve::prefill
