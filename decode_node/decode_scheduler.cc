#include "decode_node/decode_scheduler.h"

#include <algorithm>
#include <iostream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/kv_transfer/transfer_token.h"
#include "common/request/request_contract.h"

namespace pdserve::decode {
namespace {

// How often a blocking Reserve re-checks its caller's cancellation.
constexpr absl::Duration kReservePoll = absl::Milliseconds(20);

bool IsTerminal(SequenceState state) {
  return state == SequenceState::kFinished || state == SequenceState::kCancelled ||
         state == SequenceState::kFailed;
}

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace

const char* SequenceStateName(SequenceState state) {
  switch (state) {
    case SequenceState::kWaitingForBlocks:
      return "waiting for blocks";
    case SequenceState::kAwaitingKv:
      return "awaiting KV";
    case SequenceState::kReady:
      return "ready";
    case SequenceState::kDecoding:
      return "decoding";
    case SequenceState::kStalled:
      return "stalled";
    case SequenceState::kFinished:
      return "finished";
    case SequenceState::kCancelled:
      return "cancelled";
    case SequenceState::kFailed:
      return "failed";
  }
  return "unknown";
}

struct DecodeScheduler::Sequence {
  DecodeSpec spec;
  SequenceState state = SequenceState::kWaitingForBlocks;
  int64_t n_blocks = 0;            // what the reservation asks for
  absl::Time reserve_deadline = absl::InfiniteFuture();  // while kWaitingForBlocks
  absl::Time deadline = absl::InfiniteFuture();          // the whole sequence
  ReservedCallback on_reserved;    // until answered
  EventsCallback on_events;        // may be empty
  kv::BlockTable table;            // reserved for prompt + max_tokens positions
  bool blocks_held = false;        // table.blocks are allocated from the pool
  bool in_step = false;            // a running Forward reads/writes table's blocks
  // The transfer: per prompt block kAbsent → kInFlight (pinned) → kReceived.
  enum BlockState : uint8_t { kAbsent, kInFlight, kReceived };
  std::string transfer_token;      // while by_token_ holds it
  kv_transfer::KvLease lease;      // while kAwaitingKv
  std::vector<BlockState> kv_blocks;  // per prompt block
  int64_t n_kv_received = 0;
  int pins = 0;                    // receive sessions between Pin and Unpin
  bool kv_complete = false;        // every prompt block and the first token arrived
  std::vector<int32_t> tokens;     // prompt, then output; K/V cached for all but the last
  int64_t n_output = 0;            // output tokens so far, counting index 0
  int64_t prompt_tokens_computed = 0;
  std::deque<SequenceEvent> events;  // for the consumer, in order
  int64_t n_undelivered_tokens = 0;  // kToken events in `events`
  absl::Time stalled_since = absl::InfinitePast();  // while kStalled
};

// Holds mutex_; on the way out, runs the callbacks queued meanwhile with mutex_ released.
class ABSL_SCOPED_LOCKABLE DecodeScheduler::LockAndNotify {
 public:
  explicit LockAndNotify(DecodeScheduler* scheduler)
      ABSL_EXCLUSIVE_LOCK_FUNCTION(scheduler->mutex_)
      : scheduler_(scheduler) {
    scheduler_->mutex_.Lock();
  }
  ~LockAndNotify() ABSL_UNLOCK_FUNCTION() {
    scheduler_->RunCallbacksLocked();
    scheduler_->mutex_.Unlock();
  }
  LockAndNotify(const LockAndNotify&) = delete;
  LockAndNotify& operator=(const LockAndNotify&) = delete;

 private:
  DecodeScheduler* const scheduler_;
};

DecodeScheduler::DecodeScheduler(const model::ModelConfig& config, kv::KvBlockPool& pool,
                                 engine::ForwardPass& forward, std::vector<int32_t> end_ids,
                                 SchedulerOptions options)
    : config_(config),
      pool_(pool),
      forward_(forward),
      end_ids_(std::move(end_ids)),
      options_(options) {
  thread_ = std::thread([this] { Run(); });
}

DecodeScheduler::~DecodeScheduler() {
  {
    LockAndNotify lock(this);
    stop_ = true;
    const absl::Status stopping = absl::UnavailableError("the decode worker is shutting down");
    while (!waiting_.empty()) DropWaiterLocked(waiting_.front(), stopping);
    for (auto& [id, seq] : sequences_) {
      if (IsTerminal(seq->state)) continue;
      SequenceEvent event;
      event.kind = SequenceEvent::Kind::kError;
      event.error = stopping;
      EndLocked(*seq, SequenceState::kCancelled, std::move(event));
    }
    work_cv_.SignalAll();
    events_cv_.SignalAll();
  }
  thread_.join();
  LockAndNotify lock(this);
  for (auto& seq : running_) FreeBlocksLocked(*seq);
  ReleaseQuarantinedLocked(absl::InfiniteFuture());
  pending_callbacks_.clear();  // nobody waits for blocks any more
}

bool DecodeScheduler::IsEndToken(int32_t token) const {
  return std::find(end_ids_.begin(), end_ids_.end(), token) != end_ids_.end();
}

void DecodeScheduler::RunCallbacksLocked() {
  while (!pending_callbacks_.empty()) {
    std::vector<std::function<void()>> callbacks;
    callbacks.swap(pending_callbacks_);
    mutex_.Unlock();
    for (std::function<void()>& callback : callbacks) callback();
    callbacks.clear();  // their captures are released without the lock too
    mutex_.Lock();
  }
}

absl::Status DecodeScheduler::StartReserve(ReserveCall call) {
  const DecodeSpec& spec = call.spec;
  request::SequenceRequest checked;
  checked.request_id = spec.request_id;
  checked.prompt_ids = spec.prompt_ids;
  checked.max_tokens = spec.max_tokens;
  checked.sampling = &spec.sampling;
  if (absl::Status s = request::CheckSequenceRequest(
          checked, {config_.context_length, config_.vocab_size});
      !s.ok()) {
    return s;
  }
  const int64_t n_prompt = static_cast<int64_t>(spec.prompt_ids.size());
  const int64_t n_blocks = CeilDiv(n_prompt + spec.max_tokens, pool_.layout().block_size);
  if (n_blocks > pool_.n_total()) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "request '", spec.request_id, "' needs ", n_blocks, " KV blocks (", n_prompt,
        " prompt + ", spec.max_tokens, " max tokens) but the whole pool has ", pool_.n_total()));
  }

  LockAndNotify lock(this);
  if (stop_) return absl::UnavailableError("the decode worker is shutting down");
  if (sequences_.count(spec.request_id) > 0) {
    return absl::AlreadyExistsError(
        absl::StrCat("request id '", spec.request_id, "' is already in use on this worker"));
  }
  const bool can_wait = static_cast<int64_t>(waiting_.size()) < options_.max_waiting_reservations;
  // Only an empty FIFO lets a newcomer take blocks at once: nobody overtakes a waiter.
  if (!can_wait && !(waiting_.empty() && pool_.n_free() >= n_blocks)) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "request '", spec.request_id, "': ", waiting_.size(),
        " reservations are already waiting for KV blocks on this decode worker, its limit "
        "(--max-waiting-reservations ",
        options_.max_waiting_reservations, "); retry later or on another decode worker"));
  }
  auto seq = std::make_shared<Sequence>();
  seq->spec = std::move(call.spec);
  seq->n_blocks = n_blocks;
  seq->reserve_deadline = call.reserve_deadline;
  seq->deadline = call.deadline;
  seq->on_reserved = std::move(call.on_reserved);
  seq->on_events = std::move(call.on_events);
  sequences_[seq->spec.request_id] = seq;
  waiting_.push_back(seq);
  GrantWaitersLocked();
  work_cv_.Signal();  // a new timer: its deadline
  return absl::OkStatus();
}

absl::StatusOr<Reservation> DecodeScheduler::Reserve(const DecodeSpec& spec, absl::Time deadline,
                                                     const std::function<bool()>& is_cancelled) {
  struct Answer {
    absl::Mutex mutex;
    std::optional<absl::StatusOr<Reservation>> value ABSL_GUARDED_BY(mutex);
  };
  auto answer = std::make_shared<Answer>();
  ReserveCall call;
  call.spec = spec;
  call.reserve_deadline = deadline;
  call.on_reserved = [answer](absl::StatusOr<Reservation> r) {
    absl::MutexLock lock(&answer->mutex);
    answer->value = std::move(r);
  };
  if (absl::Status s = StartReserve(std::move(call)); !s.ok()) return s;
  absl::MutexLock lock(&answer->mutex);
  auto answered = [&answer]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(answer->mutex) {
    return answer->value.has_value();
  };
  while (!answered()) {
    answer->mutex.AwaitWithTimeout(absl::Condition(&answered), kReservePoll);
    if (answered() || !is_cancelled || !is_cancelled()) continue;
    answer->mutex.Unlock();
    Release(spec.request_id);  // also cancels a reservation granted meanwhile
    answer->mutex.Lock();
    return absl::CancelledError(
        absl::StrCat("request '", spec.request_id, "' cancelled while waiting for KV blocks"));
  }
  return *std::move(answer->value);
}

void DecodeScheduler::GrantWaitersLocked() {
  ReleaseQuarantinedLocked(absl::Now());
  while (!waiting_.empty()) {
    const std::shared_ptr<Sequence> head = waiting_.front();
    absl::StatusOr<std::vector<kv::BlockId>> blocks = pool_.Allocate(head->n_blocks);
    if (!blocks.ok()) {
      if (absl::IsResourceExhausted(blocks.status())) return;  // the head waits; so do the rest
      DropWaiterLocked(head, blocks.status());
      continue;
    }
    waiting_.pop_front();
    head->table.blocks = *std::move(blocks);
    head->blocks_held = true;
    Reservation reservation = GrantLocked(*head);
    pending_callbacks_.push_back(
        [callback = std::move(head->on_reserved), reservation = std::move(reservation)]() mutable {
          callback(std::move(reservation));
        });
    head->on_reserved = nullptr;
  }
}

Reservation DecodeScheduler::GrantLocked(Sequence& seq) {
  const int64_t n_prompt = static_cast<int64_t>(seq.spec.prompt_ids.size());
  const int64_t n_prompt_blocks = CeilDiv(n_prompt, pool_.layout().block_size);
  seq.state = SequenceState::kAwaitingKv;
  seq.kv_blocks.assign(n_prompt_blocks, Sequence::kAbsent);
  seq.tokens = seq.spec.prompt_ids;
  const absl::Time lease_start = absl::Now();
  seq.lease = kv_transfer::KvLease(options_.kv_lease, lease_start);
  do {
    seq.transfer_token = kv_transfer::NewTransferToken();
  } while (by_token_.count(seq.transfer_token) > 0);
  by_token_[seq.transfer_token] = sequences_[seq.spec.request_id];
  Reservation reservation;
  reservation.n_blocks = seq.n_blocks;
  reservation.transfer_token = seq.transfer_token;
  reservation.prompt_blocks.assign(seq.table.blocks.begin(),
                                   seq.table.blocks.begin() + n_prompt_blocks);
  reservation.lease_expiry = lease_start + options_.kv_lease.max;
  return reservation;
}

void DecodeScheduler::DropWaiterLocked(const std::shared_ptr<Sequence>& seq,
                                       absl::Status answer) {
  auto it = std::find(waiting_.begin(), waiting_.end(), seq);
  if (it == waiting_.end()) return;
  const bool was_head = it == waiting_.begin();
  waiting_.erase(it);
  seq->state = SequenceState::kCancelled;
  sequences_.erase(seq->spec.request_id);
  if (!answer.ok() && seq->on_reserved) {
    pending_callbacks_.push_back(
        [callback = std::move(seq->on_reserved), answer = std::move(answer)] { callback(answer); });
  }
  seq->on_reserved = nullptr;
  seq->on_events = nullptr;
  // The new head may fit where the old one did not.
  if (was_head && !stop_) GrantWaitersLocked();
}

void DecodeScheduler::NotifyLocked(Sequence& seq) {
  events_cv_.SignalAll();
  if (seq.on_events) pending_callbacks_.push_back(seq.on_events);
}

absl::StatusOr<std::shared_ptr<DecodeScheduler::Sequence>> DecodeScheduler::FindByTokenLocked(
    absl::string_view token) {
  auto it = by_token_.find(token);
  if (it == by_token_.end()) {
    return absl::PermissionDeniedError(
        "no reservation on this decode worker holds this KV transfer token");
  }
  return it->second;
}

absl::StatusOr<std::shared_ptr<DecodeScheduler::Sequence>> DecodeScheduler::AwaitingKvLocked(
    absl::string_view token) {
  absl::StatusOr<std::shared_ptr<Sequence>> found = FindByTokenLocked(token);
  if (!found.ok()) return found.status();
  const Sequence& seq = **found;
  if (seq.state != SequenceState::kAwaitingKv) {
    return absl::FailedPreconditionError(absl::StrCat("request '", seq.spec.request_id,
                                                      "' is not awaiting KV (it is ",
                                                      SequenceStateName(seq.state), ")"));
  }
  return found;
}

absl::Status DecodeScheduler::CheckLeaseLocked(Sequence& seq, absl::Time now) {
  if (seq.state != SequenceState::kAwaitingKv) return absl::OkStatus();
  absl::Status s = seq.lease.Check(now);
  if (s.ok()) return s;
  return FailLocked(seq, absl::Status(s.code(), absl::StrCat("request '", seq.spec.request_id,
                                                             "': ", s.message())));
}

void DecodeScheduler::ForgetTokenIfDoneLocked(Sequence& seq) {
  if (seq.pins > 0 || seq.state == SequenceState::kAwaitingKv) return;
  if (IsTerminal(seq.state) && !seq.in_step && seq.blocks_held) FreeBlocksLocked(seq);
  if (seq.transfer_token.empty()) return;
  // The map may hold the last reference to `seq`: nothing of it is touched after the erase.
  const std::string token = std::move(seq.transfer_token);
  seq.transfer_token.clear();
  by_token_.erase(token);
}

absl::StatusOr<kv_transfer::ReservationView> DecodeScheduler::Lookup(absl::string_view token) {
  LockAndNotify lock(this);
  absl::StatusOr<std::shared_ptr<Sequence>> found = AwaitingKvLocked(token);
  if (!found.ok()) return found.status();
  const std::shared_ptr<Sequence> keep = *std::move(found);  // alive to the end of the call
  Sequence& seq = *keep;
  if (absl::Status s = CheckLeaseLocked(seq, absl::Now()); !s.ok()) return s;
  seq.lease.Touch(absl::Now());
  kv_transfer::ReservationView view;
  view.request_id = seq.spec.request_id;
  view.n_prompt_tokens = static_cast<int64_t>(seq.spec.prompt_ids.size());
  view.target_blocks.assign(seq.table.blocks.begin(),
                            seq.table.blocks.begin() + static_cast<int64_t>(seq.kv_blocks.size()));
  return view;
}

absl::Status DecodeScheduler::Pin(absl::string_view token, absl::Span<const int64_t> indices) {
  LockAndNotify lock(this);
  absl::StatusOr<std::shared_ptr<Sequence>> found = AwaitingKvLocked(token);
  if (!found.ok()) return found.status();
  const std::shared_ptr<Sequence> keep = *std::move(found);  // alive to the end of the call
  Sequence& seq = *keep;
  const absl::Time now = absl::Now();
  if (absl::Status s = CheckLeaseLocked(seq, now); !s.ok()) return s;
  const int64_t n_prompt_blocks = static_cast<int64_t>(seq.kv_blocks.size());
  for (int64_t index : indices) {
    const std::string where =
        absl::StrCat("request '", seq.spec.request_id, "' KV block ", index, ": ");
    if (index < 0 || index >= n_prompt_blocks) {
      return FailLocked(seq, absl::InvalidArgumentError(absl::StrCat(
                                 where, "index out of range [0, ", n_prompt_blocks, ")")));
    }
    if (seq.kv_blocks[index] != Sequence::kAbsent) {
      return FailLocked(seq,
                        absl::InvalidArgumentError(absl::StrCat(where, "sent more than once")));
    }
  }
  for (int64_t index : indices) seq.kv_blocks[index] = Sequence::kInFlight;
  ++seq.pins;
  seq.lease.Touch(now);
  return absl::OkStatus();
}

absl::Status DecodeScheduler::Unpin(absl::string_view token, absl::Span<const int64_t> indices,
                                    absl::Status verdict) {
  LockAndNotify lock(this);
  absl::StatusOr<std::shared_ptr<Sequence>> found = FindByTokenLocked(token);
  if (!found.ok()) return found.status();
  const std::shared_ptr<Sequence> keep = *std::move(found);  // alive to the end of the call
  Sequence& seq = *keep;
  --seq.pins;
  for (int64_t index : indices) {
    seq.kv_blocks[index] = verdict.ok() ? Sequence::kReceived : Sequence::kAbsent;
  }
  absl::Status result = verdict;
  if (verdict.ok()) {
    seq.n_kv_received += static_cast<int64_t>(indices.size());
    seq.lease.Touch(absl::Now());
    if (seq.state != SequenceState::kAwaitingKv) {
      result = absl::FailedPreconditionError(absl::StrCat(
          "request '", seq.spec.request_id, "' ended while its KV arrived (it is ",
          SequenceStateName(seq.state), ")"));
    }
  } else if (seq.state == SequenceState::kAwaitingKv) {
    (void)FailLocked(seq, verdict);
  }
  ForgetTokenIfDoneLocked(seq);
  return result;
}

absl::Status DecodeScheduler::Complete(absl::string_view token, int32_t first_token) {
  LockAndNotify lock(this);
  absl::StatusOr<std::shared_ptr<Sequence>> found = AwaitingKvLocked(token);
  if (!found.ok()) return found.status();
  const std::shared_ptr<Sequence> keep = *std::move(found);  // alive to the end of the call
  Sequence& seq = *keep;
  const std::string& request_id = seq.spec.request_id;
  const int64_t n_prompt_blocks = static_cast<int64_t>(seq.kv_blocks.size());
  absl::Status problem;
  if (seq.n_kv_received != n_prompt_blocks) {
    problem = absl::InvalidArgumentError(absl::StrCat("request '", request_id,
                                                      "': the last KV chunk came after ",
                                                      seq.n_kv_received, " of ", n_prompt_blocks,
                                                      " prompt blocks"));
  } else if (first_token < 0 || first_token >= config_.vocab_size) {
    problem = absl::InvalidArgumentError(
        absl::StrCat("request '", request_id, "': first token ", first_token,
                     " is outside the vocabulary [0, ", config_.vocab_size, ")"));
  }
  if (!problem.ok()) {
    (void)FailLocked(seq, problem);
    ForgetTokenIfDoneLocked(seq);
    return problem;
  }
  seq.table.n_tokens = static_cast<int64_t>(seq.spec.prompt_ids.size());
  seq.kv_complete = true;
  if (IsEndToken(first_token) && !seq.spec.ignore_eos) {
    FinishLocked(seq, request::FinishReason::kEos);
  } else {
    seq.tokens.push_back(first_token);
    seq.n_output = 1;
    if (seq.n_output >= seq.spec.max_tokens) {
      FinishLocked(seq, request::FinishReason::kLength);
    } else {
      seq.state = SequenceState::kReady;
      ready_.push_back(keep);
      work_cv_.Signal();
    }
  }
  ForgetTokenIfDoneLocked(seq);
  return absl::OkStatus();
}

void DecodeScheduler::Fail(absl::string_view token, const absl::Status& error) {
  LockAndNotify lock(this);
  absl::StatusOr<std::shared_ptr<Sequence>> found = FindByTokenLocked(token);
  if (!found.ok()) return;
  const std::shared_ptr<Sequence> keep = *std::move(found);  // alive to the end of the call
  Sequence& seq = *keep;
  if (seq.state == SequenceState::kAwaitingKv) (void)FailLocked(seq, error);
  ForgetTokenIfDoneLocked(seq);
}

absl::Status DecodeScheduler::WaitEvents(const std::string& request_id, absl::Time until,
                                         std::vector<SequenceEvent>* events) {
  LockAndNotify lock(this);
  auto it = sequences_.find(request_id);
  if (it == sequences_.end()) {
    return absl::NotFoundError(absl::StrCat("unknown request id '", request_id, "'"));
  }
  std::shared_ptr<Sequence> seq = it->second;
  if (seq->state == SequenceState::kAwaitingKv) until = std::min(until, seq->lease.expiry());
  while (seq->events.empty() && !stop_) {
    if (events_cv_.WaitWithDeadline(&mutex_, until)) break;
  }
  (void)CheckLeaseLocked(*seq, absl::Now());
  while (!seq->events.empty()) {
    events->push_back(std::move(seq->events.front()));
    seq->events.pop_front();
  }
  seq->n_undelivered_tokens = 0;
  if (seq->state == SequenceState::kStalled) {
    seq->state = SequenceState::kReady;
    ready_.push_back(seq);
    work_cv_.Signal();
  }
  return absl::OkStatus();
}

std::optional<SequenceEvent> DecodeScheduler::TakeEvent(const std::string& request_id) {
  absl::MutexLock lock(&mutex_);
  auto it = sequences_.find(request_id);
  if (it == sequences_.end() || it->second->events.empty()) return std::nullopt;
  const std::shared_ptr<Sequence>& seq = it->second;
  SequenceEvent event = std::move(seq->events.front());
  seq->events.pop_front();
  if (event.kind == SequenceEvent::Kind::kToken) --seq->n_undelivered_tokens;
  if (seq->state == SequenceState::kStalled && seq->n_undelivered_tokens == 0) {
    seq->state = SequenceState::kReady;
    ready_.push_back(seq);
    work_cv_.Signal();
  }
  return event;
}

void DecodeScheduler::Release(const std::string& request_id) {
  LockAndNotify lock(this);
  auto it = sequences_.find(request_id);
  if (it == sequences_.end()) return;
  const std::shared_ptr<Sequence> seq = it->second;
  if (seq->state == SequenceState::kWaitingForBlocks) {
    DropWaiterLocked(seq, absl::OkStatus());
  } else {
    seq->on_reserved = nullptr;
    seq->on_events = nullptr;
    if (!IsTerminal(seq->state)) {
      SequenceEvent event;
      event.kind = SequenceEvent::Kind::kError;
      event.error = absl::CancelledError(absl::StrCat("request '", request_id, "' cancelled"));
      EndLocked(*seq, SequenceState::kCancelled, std::move(event));
    }
    sequences_.erase(request_id);
  }
}

SequenceState DecodeScheduler::StateOf(const std::string& request_id) const {
  absl::MutexLock lock(&mutex_);
  auto it = sequences_.find(request_id);
  return it == sequences_.end() ? SequenceState::kCancelled : it->second->state;
}

SchedulerLoad DecodeScheduler::Load() const {
  absl::MutexLock lock(&mutex_);
  SchedulerLoad load;
  for (const Quarantined& q : quarantined_) {
    load.quarantined_kv_blocks += static_cast<int64_t>(q.blocks.size());
  }
  load.queue_length = static_cast<int64_t>(waiting_.size());
  for (const auto& [id, seq] : sequences_) {
    if (seq->state == SequenceState::kAwaitingKv || seq->state == SequenceState::kReady ||
        seq->state == SequenceState::kDecoding || seq->state == SequenceState::kStalled) {
      ++load.active_sequences;
    }
  }
  load.free_kv_blocks = pool_.n_free();
  load.total_kv_blocks = pool_.n_total();
  return load;
}

int64_t DecodeScheduler::prompt_tokens_computed() const {
  absl::MutexLock lock(&mutex_);
  return prompt_tokens_computed_;
}

int64_t DecodeScheduler::max_batch_seen() const {
  absl::MutexLock lock(&mutex_);
  return max_batch_seen_;
}

bool DecodeScheduler::ReleaseQuarantinedLocked(absl::Time now) {
  bool released = false;
  while (!quarantined_.empty() && quarantined_.front().until <= now) {
    if (absl::Status s = pool_.Free(quarantined_.front().blocks); !s.ok()) {
      std::cerr << "pdserve-decode: freeing quarantined blocks failed: " << s.message() << "\n";
    }
    quarantined_.pop_front();
    released = true;
  }
  return released;
}

void DecodeScheduler::FreeBlocksLocked(Sequence& seq) {
  if (!seq.blocks_held) return;
  if (options_.kv_quarantine > absl::ZeroDuration() && !seq.kv_complete) {
    // A same-host sender may still be writing these blocks: they wait before they are reused.
    quarantined_.push_back({absl::Now() + options_.kv_quarantine, std::move(seq.table.blocks)});
    seq.blocks_held = false;
    seq.table.blocks.clear();
    work_cv_.Signal();  // a new timer
    return;
  }
  if (absl::Status s = pool_.Free(seq.table.blocks); !s.ok()) {
    // A double free is a bug in this class, never a peer's doing.
    std::cerr << "pdserve-decode: freeing blocks of '" << seq.spec.request_id
              << "' failed: " << s.message() << "\n";
  }
  seq.blocks_held = false;
  seq.table.blocks.clear();
  if (!stop_) GrantWaitersLocked();
}

void DecodeScheduler::EndLocked(Sequence& seq, SequenceState state, SequenceEvent event) {
  if (IsTerminal(seq.state)) return;
  seq.state = state;
  if (options_.observer != nullptr) options_.observer->OnSequenceEnd(state, event.finish_reason);
  ready_.erase(std::remove_if(ready_.begin(), ready_.end(),
                              [&](const std::shared_ptr<Sequence>& s) { return s.get() == &seq; }),
               ready_.end());
  // A step or a receive session using the blocks: whoever finishes last frees them.
  if (!seq.in_step && seq.pins == 0) FreeBlocksLocked(seq);
  ForgetTokenIfDoneLocked(seq);
  seq.events.push_back(std::move(event));
  NotifyLocked(seq);
}

absl::Status DecodeScheduler::FailLocked(Sequence& seq, absl::Status error) {
  SequenceEvent event;
  event.kind = SequenceEvent::Kind::kError;
  event.error = error;
  EndLocked(seq, SequenceState::kFailed, std::move(event));
  return error;
}

void DecodeScheduler::FinishLocked(Sequence& seq, request::FinishReason reason) {
  SequenceEvent event;
  event.kind = SequenceEvent::Kind::kFinished;
  event.finish_reason = reason;
  event.completion_tokens = seq.n_output;
  event.prompt_tokens_computed = seq.prompt_tokens_computed;
  EndLocked(seq, SequenceState::kFinished, std::move(event));
}

absl::Time DecodeScheduler::ExpireLocked(absl::Time now) {
  absl::Time next = absl::InfiniteFuture();
  if (ReleaseQuarantinedLocked(now)) GrantWaitersLocked();
  if (!quarantined_.empty()) next = std::min(next, quarantined_.front().until);
  std::vector<std::shared_ptr<Sequence>> expired_waiters;
  for (const std::shared_ptr<Sequence>& seq : waiting_) {
    if (seq->reserve_deadline <= now) {
      expired_waiters.push_back(seq);
    } else {
      next = std::min(next, seq->reserve_deadline);
    }
  }
  for (const std::shared_ptr<Sequence>& seq : expired_waiters) {
    DropWaiterLocked(seq, absl::DeadlineExceededError(absl::StrCat(
                              "request '", seq->spec.request_id,
                              "': deadline passed while waiting for ", seq->n_blocks,
                              " free KV blocks (", pool_.n_free(), " free)")));
  }
  for (auto& [id, seq] : sequences_) {
    if (IsTerminal(seq->state) || seq->state == SequenceState::kWaitingForBlocks) continue;
    auto end_with = [&](absl::Status error) {
      SequenceEvent event;
      event.kind = SequenceEvent::Kind::kError;
      event.error = std::move(error);
      EndLocked(*seq, SequenceState::kCancelled, std::move(event));
    };
    if (seq->deadline <= now) {
      end_with(absl::DeadlineExceededError(absl::StrCat(
          "request '", id, "': deadline passed (", SequenceStateName(seq->state), ")")));
      continue;
    }
    next = std::min(next, seq->deadline);
    if (seq->state == SequenceState::kAwaitingKv) {
      if (!CheckLeaseLocked(*seq, now).ok()) continue;
      next = std::min(next, seq->lease.expiry());
    } else if (seq->state == SequenceState::kStalled) {
      const absl::Time give_up = seq->stalled_since + options_.stalled_stream_timeout;
      if (give_up <= now) {
        end_with(absl::AbortedError(absl::StrCat(
            "request '", id, "': the consumer took none of its last ", seq->n_undelivered_tokens,
            " tokens for ", absl::FormatDuration(options_.stalled_stream_timeout),
            " (--stalled-stream-timeout-ms); the sequence was cancelled and its KV blocks "
            "freed")));
        continue;
      }
      next = std::min(next, give_up);
    }
  }
  return next;
}

void DecodeScheduler::Run() {
  const int64_t vocab = config_.vocab_size;
  absl::MutexLock lock(&mutex_);
  while (true) {
    const absl::Time next_timer = ExpireLocked(absl::Now());
    if (!pending_callbacks_.empty()) {
      RunCallbacksLocked();
      continue;  // the callbacks may have added timers or work
    }
    if (stop_) return;
    // Between steps: ended and stalled sequences leave, ready ones join (arrival order, up to
    // max_batch).
    running_.erase(std::remove_if(running_.begin(), running_.end(),
                                  [](const std::shared_ptr<Sequence>& s) {
                                    return s->state != SequenceState::kDecoding;
                                  }),
                   running_.end());
    while (static_cast<int>(running_.size()) < options_.max_batch && !ready_.empty()) {
      std::shared_ptr<Sequence> seq = ready_.front();
      ready_.pop_front();
      seq->state = SequenceState::kDecoding;
      running_.push_back(std::move(seq));
    }
    if (running_.empty()) {
      work_cv_.WaitWithDeadline(&mutex_, next_timer);
      continue;
    }

    // One token per sequence: the last chosen one, at the position after the cached ones.
    std::vector<engine::BatchToken> batch;
    batch.reserve(running_.size());
    for (auto& seq : running_) {
      const int64_t position = static_cast<int64_t>(seq->tokens.size()) - 1;
      if (position < static_cast<int64_t>(seq->spec.prompt_ids.size())) {
        ++seq->prompt_tokens_computed;  // never expected: the prompt's KV came from prefill
        ++prompt_tokens_computed_;
      }
      seq->in_step = true;
      batch.push_back(engine::BatchToken{seq->tokens.back(), position, &seq->table, true});
    }
    max_batch_seen_ = std::max<int64_t>(max_batch_seen_, static_cast<int64_t>(batch.size()));
    std::vector<std::shared_ptr<Sequence>> stepped = running_;

    mutex_.Unlock();
    const absl::Time step_start = absl::Now();
    absl::StatusOr<std::vector<float>> logits = forward_.Forward(batch);
    const absl::Duration forward_time = absl::Now() - step_start;
    const absl::Duration pad = options_.min_step_duration - forward_time;
    if (pad > absl::ZeroDuration()) absl::SleepFor(pad);
    mutex_.Lock();

    const absl::Time now = absl::Now();
    int64_t n_sampled = 0;
    for (size_t i = 0; i < stepped.size(); ++i) {
      Sequence& seq = *stepped[i];
      seq.in_step = false;
      if (seq.state != SequenceState::kDecoding) {  // ended during the step
        FreeBlocksLocked(seq);
        continue;
      }
      if (!logits.ok()) {
        (void)FailLocked(seq, absl::InternalError(absl::StrCat(
                                  "decode step failed: ", logits.status().message())));
        continue;
      }
      const int64_t n_tokens = static_cast<int64_t>(seq.tokens.size());
      seq.table.n_tokens = n_tokens;
      const absl::Span<const float> row(logits->data() + i * vocab, vocab);
      const int32_t next = sampling::SampleToken(row, seq.spec.sampling, n_tokens, seq.tokens);
      ++n_sampled;
      if (IsEndToken(next) && !seq.spec.ignore_eos) {
        FinishLocked(seq, request::FinishReason::kEos);
        continue;
      }
      seq.tokens.push_back(next);
      SequenceEvent event;
      event.kind = SequenceEvent::Kind::kToken;
      event.token_id = next;
      event.index = seq.n_output;
      seq.events.push_back(event);
      ++seq.n_undelivered_tokens;
      ++seq.n_output;
      if (seq.n_output >= seq.spec.max_tokens) {
        FinishLocked(seq, request::FinishReason::kLength);
        continue;
      }
      NotifyLocked(seq);
      if (options_.max_undelivered_tokens > 0 &&
          seq.n_undelivered_tokens >= options_.max_undelivered_tokens) {
        seq.state = SequenceState::kStalled;  // leaves the batch at the top of the loop
        seq.stalled_since = now;
      }
    }
    if (options_.observer != nullptr && logits.ok()) {
      options_.observer->OnStep(forward_time, n_sampled);
    }
  }
}

}  // namespace pdserve::decode
