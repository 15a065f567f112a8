#include "prefill_node/prefill_scheduler.h"

#include <algorithm>
#include <atomic>
#include <optional>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/request/request_contract.h"

namespace pdserve::prefill {
namespace {

constexpr absl::Duration kPollInterval = absl::Milliseconds(20);

}  // namespace

struct PrefillScheduler::Job {
  enum class State { kQueued, kRunning, kDone };

  PrefillJob request;
  PrefillDone done;
  Ticket ticket = 0;
  absl::Time enqueued;
  // These two are guarded by the scheduler's mutex_, which an annotation here cannot name.
  State state = State::kQueued;
  absl::Status cancel_reason;
  std::atomic<bool> cancelled{false};     // the caller gave up (or the scheduler is stopping)

  // The handoff while it is open, so that a cancelling caller can break a blocked send.
  absl::Mutex sender_mutex;
  kv_transfer::KvHandoffSender* sender ABSL_GUARDED_BY(sender_mutex) = nullptr;

  void CancelSink() {
    absl::MutexLock lock(&sender_mutex);
    if (sender != nullptr) sender->Cancel();
  }
};

PrefillScheduler::PrefillScheduler(engine::Engine& engine,
                                   kv_transfer::KvSendStreamFactory& transports,
                                   PrefillSchedulerOptions options)
    : engine_(engine),
      transports_(transports),
      options_(std::move(options)),
      chunk_blocks_(kv_transfer::ChunkBlocks(engine.kv_pool().layout(), options_.max_chunk_blocks,
                                             options_.max_chunk_bytes)) {
  const int n = std::max(1, options_.n_executors);
  for (int i = 0; i < n; ++i) executors_.emplace_back([this] { ExecutorLoop(); });
}

PrefillScheduler::~PrefillScheduler() { Shutdown(); }

void PrefillScheduler::Shutdown() {
  std::deque<std::shared_ptr<Job>> never_started;
  {
    absl::MutexLock lock(&mutex_);
    if (stopping_ && executors_.empty()) return;
    stopping_ = true;
    for (const std::shared_ptr<Job>& job : queue_) job->state = Job::State::kDone;
    never_started.swap(queue_);
    for (const std::shared_ptr<Job>& job : running_) {
      job->cancel_reason = absl::UnavailableError("prefill worker is shutting down");
      job->cancelled = true;
      job->CancelSink();
    }
  }
  work_cv_.SignalAll();
  blocks_cv_.SignalAll();
  for (const std::shared_ptr<Job>& job : never_started) {
    job->done(absl::UnavailableError(absl::StrCat("prefill worker is shutting down; request ",
                                                  job->request.request_id, " was not started")));
  }
  for (std::thread& t : executors_) t.join();
  absl::MutexLock lock(&mutex_);
  executors_.clear();
}

absl::Status PrefillScheduler::Validate(const PrefillJob& job) const {
  const model::ModelConfig& config = engine_.config();
  // The first generated token takes position n_prompt: max_tokens 1 must fit the context.
  request::SequenceRequest checked;
  checked.request_id = job.request_id;
  checked.prompt_ids = job.prompt_ids;
  checked.max_tokens = 1;
  checked.sampling = &job.sampling;
  if (absl::Status s = request::CheckSequenceRequest(
          checked, {config.context_length, config.vocab_size});
      !s.ok()) {
    return s;
  }
  if (job.handoff.control_address.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("request '", job.request_id, "': decode_address is empty"));
  }
  const int64_t n_prompt = static_cast<int64_t>(job.prompt_ids.size());
  if (absl::Status s = kv_transfer::CheckHandoff(job.handoff, engine_.kv_pool().layout(),
                                                 options_.model_fingerprint, n_prompt);
      !s.ok()) {
    return s;
  }
  const int block_size = engine_.kv_pool().layout().block_size;
  const int64_t n_blocks = (n_prompt + block_size - 1) / block_size;
  if (n_blocks > engine_.kv_pool().n_total()) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "request ", job.request_id, ": prompt needs ", n_blocks,
        " KV blocks but this prefill worker's pool has ", engine_.kv_pool().n_total()));
  }
  return absl::OkStatus();
}

absl::StatusOr<PrefillScheduler::Ticket> PrefillScheduler::StartPrefill(PrefillJob request,
                                                                         PrefillDone done) {
  if (absl::Status s = Validate(request); !s.ok()) return s;
  auto job = std::make_shared<Job>();
  job->request = std::move(request);
  job->done = std::move(done);
  job->enqueued = absl::Now();
  const std::string& id = job->request.request_id;

  absl::MutexLock lock(&mutex_);
  if (stopping_) return absl::UnavailableError("prefill worker is shutting down");
  if (static_cast<int>(queue_.size()) >= options_.queue_capacity) {
    return absl::ResourceExhaustedError(
        absl::StrCat("prefill queue is full (", queue_.size(), " of ", options_.queue_capacity,
                     " requests waiting); request ", id, " was not queued"));
  }
  job->ticket = next_ticket_++;
  queue_.push_back(job);
  work_cv_.Signal();
  return job->ticket;
}

void PrefillScheduler::Cancel(Ticket ticket, const absl::Status& reason) {
  std::shared_ptr<Job> dropped;
  {
    absl::MutexLock lock(&mutex_);
    auto queued = std::find_if(queue_.begin(), queue_.end(),
                               [&](const std::shared_ptr<Job>& j) { return j->ticket == ticket; });
    if (queued != queue_.end()) {
      dropped = *queued;
      dropped->state = Job::State::kDone;
      queue_.erase(queued);
    } else {
      for (const std::shared_ptr<Job>& job : running_) {
        if (job->ticket != ticket || job->cancelled) continue;
        // The executor stops at the next chunk, frees the blocks and calls done.
        job->cancel_reason = reason;
        job->cancelled = true;
        job->CancelSink();
      }
    }
  }
  blocks_cv_.SignalAll();
  if (dropped != nullptr) dropped->done(reason);
}

absl::StatusOr<PrefillOutcome> PrefillScheduler::Prefill(PrefillJob request) {
  struct Answer {
    absl::Mutex mutex;
    std::optional<absl::StatusOr<PrefillOutcome>> value ABSL_GUARDED_BY(mutex);
  };
  auto answer = std::make_shared<Answer>();
  const std::string id = request.request_id;
  const absl::Time deadline = request.deadline;
  const std::function<bool()> is_cancelled = request.is_cancelled;
  absl::StatusOr<Ticket> ticket =
      StartPrefill(std::move(request), [answer](absl::StatusOr<PrefillOutcome> outcome) {
        absl::MutexLock lock(&answer->mutex);
        answer->value = std::move(outcome);
      });
  if (!ticket.ok()) return ticket.status();
  absl::MutexLock lock(&answer->mutex);
  auto answered = [&answer]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(answer->mutex) {
    return answer->value.has_value();
  };
  bool cancelled = false;
  while (!answered()) {
    answer->mutex.AwaitWithTimeout(absl::Condition(&answered), kPollInterval);
    if (answered() || cancelled) continue;
    absl::Status reason;
    if (is_cancelled && is_cancelled()) {
      reason = absl::CancelledError(absl::StrCat("request ", id, " was cancelled by the caller"));
    } else if (absl::Now() >= deadline) {
      reason = absl::DeadlineExceededError(
          absl::StrCat("request ", id, " passed its deadline in the prefill worker"));
    } else {
      continue;
    }
    cancelled = true;
    answer->mutex.Unlock();
    Cancel(*ticket, reason);
    answer->mutex.Lock();
  }
  return *std::move(answer->value);
}

PrefillLoad PrefillScheduler::load() const {
  PrefillLoad load;
  {
    absl::MutexLock lock(&mutex_);
    load.queue_length = static_cast<int>(queue_.size());
    load.active_sequences = static_cast<int>(running_.size());
  }
  load.free_kv_blocks = engine_.kv_pool().n_free();
  load.total_kv_blocks = engine_.kv_pool().n_total();
  return load;
}

void PrefillScheduler::ExecutorLoop() {
  while (true) {
    std::shared_ptr<Job> job;
    {
      absl::MutexLock lock(&mutex_);
      while (!stopping_ && queue_.empty()) work_cv_.Wait(&mutex_);
      if (stopping_) return;
      job = queue_.front();
      queue_.pop_front();
      job->state = Job::State::kRunning;
      running_.push_back(job);
    }
    absl::StatusOr<PrefillOutcome> result = RunJob(*job);
    {
      absl::MutexLock lock(&mutex_);
      running_.erase(std::find(running_.begin(), running_.end(), job));
      job->state = Job::State::kDone;
    }
    job->done(std::move(result));
  }
}

absl::Status PrefillScheduler::StopReason(const Job& job) const {
  if (job.cancelled) {
    absl::MutexLock lock(&mutex_);
    return job.cancel_reason.ok()
               ? absl::CancelledError(absl::StrCat("request ", job.request.request_id,
                                                   " was cancelled"))
               : job.cancel_reason;
  }
  if (absl::Now() >= job.request.deadline) {
    return absl::DeadlineExceededError(absl::StrCat(
        "request ", job.request.request_id, " passed its deadline in the prefill worker"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<kv::BlockId>> PrefillScheduler::AllocateBlocks(const Job& job,
                                                                          int64_t n_blocks) {
  while (true) {
    absl::StatusOr<std::vector<kv::BlockId>> blocks = engine_.kv_pool().Allocate(n_blocks);
    if (blocks.ok() || blocks.status().code() != absl::StatusCode::kResourceExhausted) {
      return blocks;
    }
    // Another executor holds the blocks; they come back when its request ends.
    if (absl::Status s = StopReason(job); !s.ok()) return s;
    absl::MutexLock lock(&mutex_);
    if (stopping_) return absl::UnavailableError("prefill worker is shutting down");
    blocks_cv_.WaitWithTimeout(&mutex_, kPollInterval);
  }
}

void PrefillScheduler::FreeBlocks(const std::vector<kv::BlockId>& blocks) {
  (void)engine_.kv_pool().Free(blocks);
  blocks_cv_.SignalAll();
}

absl::StatusOr<PrefillOutcome> PrefillScheduler::RunJob(Job& job) {
  const PrefillJob& request = job.request;
  PrefillOutcome outcome;
  outcome.queue_seconds = absl::ToDoubleSeconds(absl::Now() - job.enqueued);
  if (absl::Status s = StopReason(job); !s.ok()) return s;

  kv::KvBlockPool& pool = engine_.kv_pool();
  const kv::KvLayout& layout = pool.layout();
  const int block_size = layout.block_size;
  const std::vector<int32_t>& prompt = request.prompt_ids;
  const int64_t n_prompt = static_cast<int64_t>(prompt.size());
  const int64_t n_blocks = (n_prompt + block_size - 1) / block_size;

  absl::StatusOr<std::vector<kv::BlockId>> allocated = AllocateBlocks(job, n_blocks);
  if (!allocated.ok()) return allocated.status();
  kv::BlockTable table;
  table.blocks = *std::move(allocated);
  struct FreeOnExit {
    PrefillScheduler* self;
    const kv::BlockTable& table;
    ~FreeOnExit() { self->FreeBlocks(table.blocks); }
  } free_on_exit{this, table};
  // The positions past the prompt in a partial last block are sent too: make them zeros rather
  // than another request's stale K/V.
  if (n_prompt % block_size != 0) {
    if (absl::Status s = pool.ZeroBlock(table.blocks.back()); !s.ok()) return s;
  }

  // The decode worker gives up on the reservation when its lease runs out: so do we.
  absl::Time deadline = request.deadline;
  if (request.handoff.lease_max > absl::ZeroDuration()) {
    deadline = std::min(deadline, absl::Now() + request.handoff.lease_max);
  }
  kv_transfer::SenderHello hello;
  hello.request_id = request.request_id;
  hello.transfer_token = request.handoff.transfer_token;
  hello.layout = layout;
  hello.model_fingerprint = options_.model_fingerprint;
  hello.n_prompt_tokens = n_prompt;
  absl::StatusOr<std::unique_ptr<kv_transfer::KvSendStream>> stream =
      transports_.Open(request.handoff, hello, deadline);
  if (!stream.ok()) return stream.status();
  kv_transfer::KvHandoffSender sender(pool, request.handoff, prompt, *std::move(stream));
  {
    absl::MutexLock lock(&job.sender_mutex);
    job.sender = &sender;
  }
  struct ForgetSenderOnExit {
    Job& job;
    ~ForgetSenderOnExit() {
      absl::MutexLock lock(&job.sender_mutex);
      job.sender = nullptr;
    }
  } forget_sender{job};

  for (int64_t first_block = 0; first_block < n_blocks; first_block += chunk_blocks_) {
    if (absl::Status s = StopReason(job); !s.ok()) {
      sender.Cancel();
      return s;
    }
    if (options_.before_chunk) {
      options_.before_chunk(request.request_id, static_cast<int>(first_block / chunk_blocks_));
    }
    const int64_t end_block = std::min<int64_t>(n_blocks, first_block + chunk_blocks_);
    const int64_t begin_pos = first_block * block_size;
    const int64_t end_pos = std::min<int64_t>(n_prompt, end_block * block_size);
    const bool last = end_block == n_blocks;

    std::vector<engine::BatchToken> batch;
    batch.reserve(end_pos - begin_pos);
    for (int64_t p = begin_pos; p < end_pos; ++p) {
      batch.push_back(engine::BatchToken{prompt[p], p, &table, last && p == n_prompt - 1});
    }
    absl::StatusOr<std::vector<float>> logits;
    {
      absl::MutexLock lock(&forward_mutex_);
      const absl::Time start = absl::Now();
      logits = engine_.forward().Forward(batch);
      outcome.prefill_seconds += absl::ToDoubleSeconds(absl::Now() - start);
    }
    if (!logits.ok()) {
      sender.Cancel();
      return logits.status();
    }
    table.n_tokens = end_pos;
    if (last) {
      // As engine::Generate chooses the first token: at position n_prompt, with the prompt as
      // the tokens the repetition penalty sees.
      outcome.first_token = sampling::SampleToken(*logits, request.sampling, n_prompt, prompt);
    }
    if (absl::Status s = sender.SendBlocks(table, first_block, end_block); !s.ok()) {
      if (absl::Status stop = StopReason(job); !stop.ok()) return stop;
      return s;
    }
    outcome.kv_blocks_sent = static_cast<int>(end_block);
  }
  absl::StatusOr<kv_transfer::TransferReport> report = sender.Finish(outcome.first_token);
  if (!report.ok()) {
    // A handoff we cancelled ourselves reads as the cancellation, not as the decode's fault.
    if (absl::Status stop = StopReason(job); !stop.ok()) return stop;
    return report.status();
  }
  outcome.transfer = *std::move(report);
  return outcome;
}

}  // namespace pdserve::prefill
