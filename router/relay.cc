#include "router/relay.h"

#include <algorithm>
#include <cstdio>
#include <random>
#include <set>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/request/request_contract.h"
#include "common/rpc/proto_convert.h"
#include "grpcpp/alarm.h"
#include "router/generation_output.h"
#include "router/request_validation.h"
#include "router/worker_selection.h"

namespace pdserve::router {
namespace {

// 16 hex digits from the operating system's random source: unique to this router's lifetime.
std::string NewInstanceId() {
  std::random_device device;
  const uint64_t id = (static_cast<uint64_t>(device()) << 32) | device();
  return absl::StrCat(absl::Hex(id, absl::kZeroPad16));
}

bool IsRetryable(absl::StatusCode code) {
  return code == absl::StatusCode::kUnavailable || code == absl::StatusCode::kResourceExhausted ||
         code == absl::StatusCode::kAborted || code == absl::StatusCode::kCancelled;
}

// `workers` without those in `avoid`, unless that leaves none of `role` healthy.
std::vector<WorkerSnapshot> Prefer(std::vector<WorkerSnapshot> workers,
                                   const std::set<std::string>& avoid, v1::WorkerRole role) {
  std::vector<WorkerSnapshot> preferred;
  for (const WorkerSnapshot& w : workers) {
    if (!avoid.count(w.worker_id)) preferred.push_back(w);
  }
  for (const WorkerSnapshot& w : preferred) {
    if (w.role == role && w.healthy) return preferred;
  }
  return workers;
}

}  // namespace

struct RelayCall::StrandState {
  State state = State::kQueued;
  bool holds_slot = false;
  bool queued = false;
  std::string client_request_id;  // what the client sees
  std::string worker_request_id;  // what workers see (unique), before the attempt suffix
  ValidatedRequest request;
  std::unique_ptr<GenerationOutput> output;
  RequestRecord record;

  // The current attempt.
  int attempt_id = 0;
  WorkerSnapshot admitted_decode;  // chosen by admission for the first attempt (may be empty)
  std::string held_worker;         // the decode worker charged with held_blocks
  int64_t held_blocks = 0;
  int n_attempts = 0;      // against max_attempts
  int n_busy_retries = 0;  // against max_busy_retries
  bool next_is_busy_retry = false;
  WorkerSnapshot decode_worker;
  WorkerSnapshot prefill_worker;
  std::unique_ptr<DecodeStream> decode_stream;
  std::unique_ptr<CancellableCall> prefill_call;
  v1::KvHandoff handoff;
  bool handoff_reused = false;     // this prefill runs on a reservation an earlier one had
  bool decode_read_pending = false;
  std::vector<v1::DecodeEvent> early_events;  // decode's, that beat prefill's answer here
  std::set<std::string> failed_workers;
  // What the client gets when attempts run out: the most telling failure so far (NoteError).
  absl::Status last_error = absl::UnavailableError("no attempt was made");
  int last_error_rank = 0;
  int n_backoffs = 0;

  // The client stream.
  std::deque<v1::GenerateResponse> outbox;
  bool write_in_flight = false;
  bool finish_pending = false;  // End ran; Finish the sink once the last write is done
  absl::Status final_status;
  absl::Duration retry_after = absl::ZeroDuration();
  absl::Time first_chunk_time = absl::InfinitePast();
  absl::Time last_token_time = absl::InfinitePast();  // when HandleToken last ran

  std::unique_ptr<grpc::Alarm> deadline_alarm;
  std::unique_ptr<grpc::Alarm> backoff_alarm;
  std::unique_ptr<grpc::Alarm> stall_alarm;  // armed while the outbox is full
  int stall_generation = 0;                  // which arming a firing belongs to
};

RelayCall::RelayCall(Relay& relay, ResponseSink& sink, absl::Time arrival, absl::Time deadline,
                     std::string client_key)
    : relay_(relay), sink_(sink), arrival_(arrival), deadline_(deadline),
      client_key_(std::move(client_key)), s_(std::make_unique<StrandState>()) {}

RelayCall::~RelayCall() = default;

void RelayCall::Post(std::function<void()> step) {
  {
    absl::MutexLock lock(&strand_mu_);
    strand_queue_.push_back(std::move(step));
    if (strand_running_) return;
    strand_running_ = true;
  }
  while (true) {
    std::function<void()> next;
    {
      absl::MutexLock lock(&strand_mu_);
      if (strand_queue_.empty()) {
        strand_running_ = false;
        return;
      }
      next = std::move(strand_queue_.front());
      strand_queue_.pop_front();
    }
    next();
  }
}

void RelayCall::OnWriteDone(bool ok) {
  Post([self = shared_from_this(), ok] {
    StrandState& s = *self->s_;
    s.write_in_flight = false;
    if (s.state == State::kDone) {
      if (!ok) s.outbox.clear();
      self->SendQueued();  // finishes the sink when End is waiting for this write
      return;
    }
    if (!ok) {
      self->End(absl::CancelledError("the client went away"));
      return;
    }
    self->SendQueued();
    self->ReadDecodeIfRoom();
  });
}

void RelayCall::OnClientCancelled() {
  Post([self = shared_from_this()] {
    self->End(absl::CancelledError("the client cancelled the request"));
  });
}

void RelayCall::Begin(absl::StatusOr<v1::GenerateRequest> request) {
  StrandState& s = *s_;
  relay_.stats_.RecordArrival();
  s.deadline_alarm = std::make_unique<grpc::Alarm>();
  s.deadline_alarm->Set(absl::ToChronoTime(deadline_), [self = shared_from_this()](bool fired) {
    if (!fired) return;
    self->Post([self] {
      if (self->s_->state == State::kDone) return;
      self->End(absl::DeadlineExceededError("the request's deadline passed"));
    });
  });
  if (!request.ok()) return End(request.status());
  if (absl::Status id_ok = request::CheckClientRequestId(request->request_id()); !id_ok.ok()) {
    return End(id_ok);
  }
  absl::StatusOr<ValidatedRequest> validated = ValidateGenerateRequest(*request, relay_.model_);
  if (!validated.ok()) return End(validated.status());
  s.request = *std::move(validated);
  s.record.prompt_tokens = static_cast<int64_t>(s.request.prompt_ids.size());
  s.output = std::make_unique<GenerationOutput>(*relay_.model_.tokenizer, s.request.prompt_ids,
                                                s.request.max_tokens, s.request.ignore_eos,
                                                s.request.stop);
  s.worker_request_id = relay_.NextWorkerRequestId(request->request_id());
  s.client_request_id =
      request->request_id().empty() ? s.worker_request_id : request->request_id();

  admission_tokens_ = static_cast<int64_t>(s.request.prompt_ids.size()) + s.request.max_tokens;
  s.queued = true;
  if (absl::Status queued = relay_.Enqueue(shared_from_this()); !queued.ok()) {
    s.queued = false;
    return End(queued, relay_.options_.retry_after);
  }
}

void RelayCall::Admitted(const WorkerSnapshot& decode, int64_t blocks) {
  StrandState& s = *s_;
  s.queued = false;
  s.holds_slot = true;
  s.admitted_decode = decode;
  s.held_worker = decode.worker_id;
  s.held_blocks = blocks;
  if (s.state == State::kDone) {  // ended while admission was on its way
    ReleaseHeldBlocks();
    s.holds_slot = false;
    relay_.ReleaseSlot();
    return;
  }
  StartAttempt();
}

template <typename WorkerRequest>
void RelayCall::FillAttempt(WorkerRequest& request) const {
  const StrandState& s = *s_;
  request.set_request_id(s.attempt_id == 1
                             ? s.worker_request_id
                             : absl::StrCat(s.worker_request_id, ".", s.attempt_id));
  request.mutable_prompt_ids()->Add(s.request.prompt_ids.begin(), s.request.prompt_ids.end());
  const std::vector<int32_t>& generated = s.output->generated();
  request.mutable_prompt_ids()->Add(generated.begin(), generated.end());
}

void RelayCall::NoteError(const absl::Status& error, bool from_worker) {
  StrandState& s = *s_;
  // A worker that died (UNAVAILABLE) is the cause; a reservation that failed because its KV
  // sender died (ABORTED), or "none is healthy" afterwards, are its consequences.
  const int rank = !from_worker ? 1 : error.code() == absl::StatusCode::kUnavailable ? 3 : 2;
  if (rank < s.last_error_rank) return;
  s.last_error = error;
  s.last_error_rank = rank;
}

bool RelayCall::CountAttempt() {
  StrandState& s = *s_;
  const bool busy = s.next_is_busy_retry;
  s.next_is_busy_retry = false;
  if (busy) return ++s.n_busy_retries <= relay_.options_.max_busy_retries;
  return ++s.n_attempts <= relay_.options_.max_attempts;
}

void RelayCall::ReleaseHeldBlocks() {
  StrandState& s = *s_;
  if (!s.held_worker.empty()) relay_.registry_.NoteReleased(s.held_worker, s.held_blocks);
  s.held_worker.clear();
  s.held_blocks = 0;
}

void RelayCall::StartAttempt() {
  StrandState& s = *s_;
  if (!CountAttempt()) return End(s.last_error);
  ++s.attempt_id;  // the previous attempt's calls were cancelled (CancelWorkerCalls) already
  s.handoff.Clear();
  s.handoff_reused = false;
  s.early_events.clear();
  s.prefill_worker = WorkerSnapshot{};
  s.record.prefill_worker.clear();

  const std::vector<int32_t>& generated = s.output->generated();
  const int64_t n_tokens =
      static_cast<int64_t>(s.request.prompt_ids.size() + generated.size()) +
      s.output->remaining_tokens();
  absl::StatusOr<WorkerSnapshot> decode = absl::UnavailableError("no decode worker chosen");
  if (!s.admitted_decode.worker_id.empty()) {
    decode = std::move(s.admitted_decode);  // admission chose it and charged its blocks
    s.admitted_decode = WorkerSnapshot{};
  } else {
    std::vector<WorkerSnapshot> workers =
        Prefer(relay_.registry_.Snapshot(), s.failed_workers, v1::WORKER_ROLE_DECODE);
    // Fail fast, before reserving decode room, when no prefill worker could take the request.
    const absl::Status prefill_available = SelectPrefillWorker(workers).status();
    decode = prefill_available.ok() ? SelectDecodeWorker(workers, n_tokens)
                                    : absl::StatusOr<WorkerSnapshot>(prefill_available);
    if (!decode.ok()) {
      // A worker's own failure says more than "none is healthy" (it is why none is).
      NoteError(decode.status(), /*from_worker=*/false);
      return Backoff([this] { StartAttempt(); });
    }
    s.held_worker = decode->worker_id;
    s.held_blocks = KvBlocksNeeded(n_tokens, decode->kv_layout.block_size());
    relay_.registry_.NoteDispatched(decode->worker_id, s.held_blocks);
  }
  s.decode_worker = *decode;
  s.record.decode_worker = decode->worker_id;
  relay_.stats_.RecordDispatch(decode->worker_id);

  v1::DecodeRequest request;
  FillAttempt(request);
  request.set_max_tokens(s.output->remaining_tokens());
  *request.mutable_sampling() = rpc::SamplingToProto(s.request.sampling);
  request.set_ignore_eos(s.request.ignore_eos);
  s.state = State::kReserving;
  const int attempt_id = s.attempt_id;
  s.decode_stream = relay_.decode_.Decode(
      *decode, request, deadline_,
      [self = shared_from_this(), attempt_id](DecodeStreamResult result) {
        self->Post([self, attempt_id, result = std::move(result)]() mutable {
          self->OnDecodeResult(attempt_id, std::move(result));
        });
      });
}

void RelayCall::OnDecodeResult(int attempt_id, DecodeStreamResult result) {
  StrandState& s = *s_;
  if (attempt_id != s.attempt_id || s.state == State::kDone) return;
  s.decode_read_pending = false;
  if (!result.event.has_value()) {
    absl::Status status = std::move(result.end_status);
    if (status.ok()) status = absl::InternalError("the stream ended without `finished`");
    if (static_cast<int>(s.outbox.size()) >= relay_.options_.max_buffered_messages) {
      // The client stopped reading, so decode gave the sequence up (its stall limit): running
      // it elsewhere would stall the same way.
      return End(absl::Status(status.code(),
                              absl::StrCat("the client stopped reading; decode worker '",
                                           s.decode_worker.worker_id, "': ", status.message())));
    }
    return FailAttempt(s.decode_worker, "decode", status, /*reuse_reservation=*/false);
  }
  const v1::DecodeEvent& event = *result.event;
  if (s.state == State::kReserving) {
    if (!event.has_reserved()) {
      return End(absl::InternalError(absl::StrCat("decode worker '", s.decode_worker.worker_id,
                                                  "' did not answer `reserved` first")));
    }
    s.handoff = event.reserved().handoff();
    StartPrefill();
    // Keeps a read outstanding, so that a reservation that fails while prefill runs is known.
    if (s.state != State::kDone && s.decode_stream != nullptr) {
      s.decode_read_pending = true;
      s.decode_stream->Read();
    }
    return;
  }
  if (s.state != State::kDecoding) {
    // Decode's events can beat prefill's answer here: they wait for it (no further read).
    s.early_events.push_back(std::move(*result.event));
    return;
  }
  HandleDecodeEvent(*result.event);
}

void RelayCall::HandleDecodeEvent(const v1::DecodeEvent& event) {
  if (event.has_token()) {
    HandleToken(event.token().token_id());
    return ReadDecodeIfRoom();
  }
  if (event.has_finished()) {
    std::optional<request::FinishReason> reason =
        request::ParseFinishReason(event.finished().finish_reason());
    return Complete(reason.value_or(request::FinishReason::kLength));
  }
  ReadDecodeIfRoom();  // an event this router does not know: skipped
}

void RelayCall::StartPrefill() {
  StrandState& s = *s_;
  std::vector<WorkerSnapshot> workers =
      Prefer(relay_.registry_.Snapshot(), s.failed_workers, v1::WORKER_ROLE_PREFILL);
  absl::StatusOr<WorkerSnapshot> prefill = SelectPrefillWorker(workers);
  if (!prefill.ok()) {
    return FailAttempt(WorkerSnapshot{}, "prefill", prefill.status(), /*reuse_reservation=*/true);
  }
  s.prefill_worker = *prefill;
  s.record.prefill_worker = prefill->worker_id;
  relay_.registry_.NoteDispatched(prefill->worker_id, 0);
  relay_.stats_.RecordDispatch(prefill->worker_id);

  v1::PrefillRequest request;
  FillAttempt(request);
  *request.mutable_sampling() = rpc::SamplingToProto(s.request.sampling);
  request.set_decode_address(s.decode_worker.address);
  *request.mutable_handoff() = s.handoff;
  s.state = State::kPrefilling;
  const int attempt_id = s.attempt_id;
  const absl::Time start = relay_.clock_();
  s.prefill_call = relay_.prefill_.Prefill(
      *prefill, request, deadline_,
      [self = shared_from_this(), attempt_id, worker = *prefill,
       start](absl::StatusOr<v1::PrefillResponse> response) {
        self->Post([self, attempt_id, worker, start, response = std::move(response)]() mutable {
          if (response.ok() && self->s_->record.queue_seconds == 0) {
            self->s_->record.queue_seconds =
                absl::ToDoubleSeconds(start - self->arrival_) + response->queue_seconds();
          }
          self->OnPrefillDone(attempt_id, worker, std::move(response));
        });
      });
}

void RelayCall::OnPrefillDone(int attempt_id, const WorkerSnapshot& worker,
                              absl::StatusOr<v1::PrefillResponse> response) {
  StrandState& s = *s_;
  if (attempt_id != s.attempt_id || s.state != State::kPrefilling) return;
  if (worker.worker_id != s.prefill_worker.worker_id) return;  // an earlier prefill of it
  s.prefill_call.reset();
  if (!response.ok()) {
    absl::Status status = response.status();
    // On a reservation another prefill had begun to fill, decode may have failed it already:
    // then this refusal means "start over", not "bad request".
    if (s.handoff_reused && (status.code() == absl::StatusCode::kPermissionDenied ||
                             status.code() == absl::StatusCode::kFailedPrecondition)) {
      status = absl::AbortedError(status.message());
    }
    return FailAttempt(worker, "prefill", status, /*reuse_reservation=*/true);
  }
  if (response->has_transfer()) {
    relay_.stats_.RecordTransfer(worker.worker_id, s.decode_worker.worker_id,
                                 response->transfer());
  }
  s.state = State::kDecoding;
  HandleToken(response->first_token());
  std::vector<v1::DecodeEvent> early = std::move(s.early_events);
  s.early_events.clear();
  if (early.empty()) return ReadDecodeIfRoom();
  for (const v1::DecodeEvent& event : early) {
    if (s.state != State::kDecoding) break;
    HandleDecodeEvent(event);
  }
}

void RelayCall::HandleToken(int32_t token) {
  StrandState& s = *s_;
  const absl::Time now = relay_.clock_();
  if (s.last_token_time != absl::InfinitePast()) {
    relay_.stats_.RecordTokenGap(absl::ToDoubleSeconds(now - s.last_token_time));
  }
  s.last_token_time = now;
  std::vector<v1::GenerateResponse> out;
  absl::StatusOr<std::optional<request::FinishReason>> step = s.output->Push(token, out);
  if (!step.ok()) {
    return End(absl::InternalError(absl::StrCat("decode worker '", s.decode_worker.worker_id,
                                                "' (", s.decode_worker.address,
                                                "): ", step.status().message())));
  }
  if (!out.empty() && s.first_chunk_time == absl::InfinitePast()) s.first_chunk_time = now;
  for (v1::GenerateResponse& response : out) s.outbox.push_back(std::move(response));
  if (step->has_value()) return Complete(**step);
  SendQueued();
}

void RelayCall::WatchClientStall() {
  StrandState& s = *s_;
  const bool full = static_cast<int>(s.outbox.size()) >= relay_.options_.max_buffered_messages;
  if (!full || s.state == State::kDone) {
    if (s.stall_alarm != nullptr) {
      ++s.stall_generation;
      s.stall_alarm.reset();
    }
    return;
  }
  if (s.stall_alarm != nullptr) return;
  s.stall_alarm = std::make_unique<grpc::Alarm>();
  const int generation = ++s.stall_generation;
  s.stall_alarm->Set(
      absl::ToChronoTime(absl::Now() + relay_.options_.client_stall_timeout),
      [self = shared_from_this(), generation](bool fired) {
        if (!fired) return;
        self->Post([self, generation] {
          if (self->s_->stall_generation != generation || self->s_->state == State::kDone) return;
          self->End(absl::AbortedError(absl::StrCat(
              "the client stopped reading its stream for ",
              absl::FormatDuration(self->relay_.options_.client_stall_timeout))));
        });
      });
}

void RelayCall::ReadDecodeIfRoom() {
  StrandState& s = *s_;
  WatchClientStall();
  if (s.state != State::kDecoding || s.decode_read_pending || s.decode_stream == nullptr) return;
  if (static_cast<int>(s.outbox.size()) >= relay_.options_.max_buffered_messages) return;
  s.decode_read_pending = true;
  s.decode_stream->Read();
}

void RelayCall::FailAttempt(const WorkerSnapshot& worker, absl::string_view role,
                            absl::Status status, bool reuse_reservation) {
  StrandState& s = *s_;
  const absl::Status named =
      worker.worker_id.empty()
          ? status
          : absl::Status(status.code(), absl::StrCat(role, " worker '", worker.worker_id, "' (",
                                                     worker.address, "): ", status.message()));
  if (!IsRetryable(status.code())) return End(named);
  // "None is healthy" says less than the failure of the worker that made it so.
  NoteError(named, /*from_worker=*/!worker.worker_id.empty());
  if (!worker.worker_id.empty()) {
    if (status.code() == absl::StatusCode::kUnavailable) {
      relay_.registry_.MarkUnreachable(worker.worker_id);
    }
    s.failed_workers.insert(worker.worker_id);
    relay_.stats_.RecordWorkerFailed(worker.worker_id);
    if (role == "prefill") {
      s.record.prefill_worker.clear();
    } else {
      s.record.decode_worker.clear();
    }
  }
  // Busy workers are waited out on their own budget; with none healthy the next attempt also
  // waits a backoff, but counts as an attempt (a dead role should fail fast, not linger).
  const bool busy = status.code() == absl::StatusCode::kResourceExhausted;
  const bool wait_first = busy || worker.worker_id.empty();
  s.next_is_busy_retry = busy;
  if (!busy) {  // a failover; busy workers are waited out without a word
    std::fprintf(stderr, "router: request %s: %s; trying again\n", s.client_request_id.c_str(),
                 named.ToString().c_str());
  }
  if (reuse_reservation && s.decode_stream != nullptr) {
    // The reservation still holds (decode has not said otherwise): only prefill runs again.
    if (!CountAttempt()) return End(s.last_error);
    s.prefill_call.reset();
    s.handoff_reused = true;
    s.state = State::kBackoff;
    auto retry = [this] {
      if (s_->decode_stream == nullptr) return StartAttempt();
      StartPrefill();
    };
    if (wait_first) return Backoff(retry);
    return retry();
  }
  // Whatever this attempt holds goes; the request starts over after the tokens it has.
  if (s.decode_stream != nullptr && !s.record.decode_worker.empty()) {
    relay_.stats_.RecordWorkerFailed(s.decode_worker.worker_id);
    s.record.decode_worker.clear();
  }
  if (s.prefill_call != nullptr && !s.record.prefill_worker.empty()) {
    relay_.stats_.RecordWorkerFailed(s.prefill_worker.worker_id);
    s.record.prefill_worker.clear();
  }
  CancelWorkerCalls();
  s.state = State::kBackoff;
  if (wait_first) return Backoff([this] { StartAttempt(); });
  StartAttempt();
}

void RelayCall::Backoff(std::function<void()> then) {
  StrandState& s = *s_;
  const absl::Duration delay =
      std::min(relay_.options_.retry_backoff * (int64_t{1} << std::min(s.n_backoffs, 20)),
               relay_.options_.retry_backoff_max);
  ++s.n_backoffs;
  if (relay_.clock_() + delay >= deadline_) return End(s.last_error);
  s.state = State::kBackoff;
  s.backoff_alarm = std::make_unique<grpc::Alarm>();
  const int attempt_id = s.attempt_id;
  s.backoff_alarm->Set(absl::ToChronoTime(absl::Now() + delay),
                       [self = shared_from_this(), attempt_id, then = std::move(then)](bool fired) {
                         if (!fired) return;
                         self->Post([self, attempt_id, then] {
                           if (self->s_->state != State::kBackoff ||
                               self->s_->attempt_id != attempt_id) {
                             return;
                           }
                           then();
                         });
                       });
}

void RelayCall::Complete(request::FinishReason reason) {
  StrandState& s = *s_;
  if (s.state == State::kDone) return;
  v1::GenerateFinal fields;
  fields.set_request_id(s.client_request_id);
  fields.set_prefill_worker(s.prefill_worker.worker_id);
  fields.set_decode_worker(s.decode_worker.worker_id);
  std::vector<v1::GenerateResponse> out;
  s.record.finish_reason = reason;
  s.output->Finish(reason, arrival_, relay_.clock_(), s.first_chunk_time, std::move(fields),
                   s.record, out);
  for (v1::GenerateResponse& response : out) s.outbox.push_back(std::move(response));
  End(absl::OkStatus());
}

void RelayCall::CancelWorkerCalls() {
  StrandState& s = *s_;
  if (s.prefill_call != nullptr) s.prefill_call->Cancel();
  s.prefill_call.reset();
  s.decode_stream.reset();  // cancels the call: decode frees the sequence's blocks
  s.decode_read_pending = false;
  ReleaseHeldBlocks();
}

void RelayCall::End(absl::Status status, absl::Duration retry_after) {
  StrandState& s = *s_;
  if (s.state == State::kDone) return;
  const State was = s.state;
  s.state = State::kDone;
  CancelWorkerCalls();
  s.backoff_alarm.reset();
  s.deadline_alarm.reset();
  s.stall_alarm.reset();
  if (s.holds_slot) {
    s.holds_slot = false;
    relay_.ReleaseSlot();
  } else if (s.queued) {
    relay_.Dequeue(this);
  }
  if (!status.ok()) {
    s.outbox.clear();  // an error ends the stream at once
    if (s.write_in_flight) sink_.CancelStream();
    if (status.code() == absl::StatusCode::kDeadlineExceeded) {
      static constexpr const char* kStateNames[] = {"queued",   "reserving", "prefilling",
                                                    "decoding", "backoff",   "done"};
      status = absl::DeadlineExceededError(
          absl::StrCat(status.message(), " (", kStateNames[static_cast<int>(was)], ")"));
    }
  }
  RequestRecord& record = s.record;
  if (s.first_chunk_time != absl::InfinitePast()) {
    record.first_chunk_sent = true;
    record.ttft_seconds = absl::ToDoubleSeconds(s.first_chunk_time - arrival_);
  }
  if (status.ok()) {
    record.outcome = RequestOutcome::kSucceeded;
  } else if (status.code() == absl::StatusCode::kCancelled ||
             status.code() == absl::StatusCode::kDeadlineExceeded) {
    record.outcome = RequestOutcome::kCancelled;
  } else {
    record.outcome = RequestOutcome::kFailed;
  }
  relay_.stats_.RecordFinish(record);
  if (!status.ok()) {
    std::fprintf(stderr, "router: request %s failed: %s (prefill worker %s, decode worker %s)\n",
                 s.client_request_id.empty() ? "(none)" : s.client_request_id.c_str(),
                 status.ToString().c_str(),
                 s.prefill_worker.worker_id.empty() ? "-" : s.prefill_worker.worker_id.c_str(),
                 s.decode_worker.worker_id.empty() ? "-" : s.decode_worker.worker_id.c_str());
  }
  s.final_status = std::move(status);
  s.retry_after = retry_after;
  s.finish_pending = true;
  SendQueued();
}

void RelayCall::SendQueued() {
  StrandState& s = *s_;
  if (s.write_in_flight) return;
  if (!s.outbox.empty()) {
    s.write_in_flight = true;
    v1::GenerateResponse next = std::move(s.outbox.front());
    s.outbox.pop_front();
    sink_.StartWrite(next);
    return;
  }
  if (s.finish_pending) {
    s.finish_pending = false;
    sink_.Finish(s.final_status, s.retry_after);
  }
}

Relay::Relay(const RouterModel& model, WorkerRegistry& registry, RouterStats& stats,
             PrefillClient& prefill, DecodeClient& decode, Clock clock, RelayOptions options)
    : model_(model), registry_(registry), stats_(stats), prefill_(prefill), decode_(decode),
      clock_(std::move(clock)), options_(options), instance_id_(NewInstanceId()) {
  registry_.SetCapacityListener([this] { Pump(); });
}

Relay::~Relay() { registry_.SetCapacityListener(nullptr); }

std::shared_ptr<RelayCall> Relay::Start(absl::StatusOr<v1::GenerateRequest> request,
                                        ResponseSink& sink, absl::Time client_deadline,
                                        std::string client_key) {
  const absl::Time arrival = clock_();
  const absl::Time deadline = std::min(client_deadline, arrival + options_.max_request_time);
  std::shared_ptr<RelayCall> call(
      new RelayCall(*this, sink, arrival, deadline, std::move(client_key)));
  call->Post([call, request = std::move(request)]() mutable { call->Begin(std::move(request)); });
  return call;
}

absl::Status Relay::Enqueue(const std::shared_ptr<RelayCall>& call) {
  {
    absl::MutexLock lock(&mu_);
    if (n_queued_ >= options_.max_queued) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "the router is at its limits (", in_flight_, " requests in flight, ", n_queued_,
          " queued); retry in ", absl::FormatDuration(options_.retry_after)));
    }
    std::deque<std::weak_ptr<RelayCall>>& queue = queues_[call->client_key_];
    if (queue.empty()) turns_.push_back(call->client_key_);
    queue.push_back(call);
    ++n_queued_;
  }
  Pump();
  return absl::OkStatus();
}

void Relay::Pump() {
  struct Admission {
    std::shared_ptr<RelayCall> call;
    WorkerSnapshot decode;
    int64_t blocks = 0;
  };
  std::vector<Admission> admitted;
  {
    absl::MutexLock lock(&mu_);
    std::vector<WorkerSnapshot> workers;
    bool have_workers = false;
    while (in_flight_ < options_.max_in_flight && !turns_.empty()) {
      const std::string key = turns_.front();
      std::deque<std::weak_ptr<RelayCall>>& queue = queues_[key];
      std::shared_ptr<RelayCall> call;
      while (!queue.empty() && call == nullptr) {
        call = queue.front().lock();
        if (call == nullptr) {
          queue.pop_front();
          --n_queued_;
        }
      }
      if (call == nullptr) {
        queues_.erase(key);
        turns_.pop_front();
        continue;
      }
      if (!have_workers) {
        workers = registry_.Snapshot();
        have_workers = true;
      }
      Admission admission{call, WorkerSnapshot{}, 0};
      // A request no worker could ever take goes on at once, to fail with why; one that fits a
      // decode worker's pool but not its free blocks waits, unless nothing is in flight to free
      // them (then the decode worker's own wait applies).
      absl::StatusOr<WorkerSnapshot> decode = SelectDecodeWorker(workers, call->admission_tokens_);
      if (decode.ok() && SelectPrefillWorker(workers).ok()) {
        const int64_t blocks = KvBlocksNeeded(call->admission_tokens_, decode->kv_layout.block_size());
        if (blocks > DecodeFreeBlocks(*decode) && in_flight_ > 0) break;
        registry_.NoteDispatched(decode->worker_id, blocks);
        for (WorkerSnapshot& w : workers) {
          if (w.worker_id == decode->worker_id) w.blocks_dispatched_since_heartbeat += blocks;
        }
        admission.decode = *std::move(decode);
        admission.blocks = blocks;
      }
      queue.pop_front();
      --n_queued_;
      turns_.pop_front();
      if (queue.empty()) {
        queues_.erase(key);
      } else {
        turns_.push_back(key);
      }
      ++in_flight_;
      admitted.push_back(std::move(admission));
    }
  }
  for (Admission& a : admitted) {
    a.call->Post([a] { a.call->Admitted(a.decode, a.blocks); });
  }
}

void Relay::ReleaseSlot() {
  {
    absl::MutexLock lock(&mu_);
    --in_flight_;
  }
  Pump();
}

void Relay::Dequeue(const RelayCall* call) {
  {
    absl::MutexLock lock(&mu_);
    auto it = queues_.find(call->client_key_);
    if (it == queues_.end()) return;
    std::deque<std::weak_ptr<RelayCall>>& queue = it->second;
    for (auto entry = queue.begin(); entry != queue.end(); ++entry) {
      if (entry->lock().get() == call) {
        queue.erase(entry);
        --n_queued_;
        break;
      }
    }
    if (queue.empty()) {
      queues_.erase(it);
      turns_.erase(std::remove(turns_.begin(), turns_.end(), call->client_key_), turns_.end());
    }
  }
}

int64_t Relay::in_flight() const {
  absl::MutexLock lock(&mu_);
  return in_flight_;
}

int64_t Relay::queued() const {
  absl::MutexLock lock(&mu_);
  return n_queued_;
}

std::string Relay::NextWorkerRequestId(const std::string& client_request_id) {
  // Workers see an id no other request has, even one the client chose or a router before a
  // restart made; the client sees the id it chose (or the one made for it).
  return absl::StrCat(client_request_id.empty() ? "req" : client_request_id, "-", instance_id_,
                      "-", next_request_number_.fetch_add(1));
}

}  // namespace pdserve::router
