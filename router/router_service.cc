#include "router/router_service.h"

#include <algorithm>
#include <functional>
#include <random>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/rpc/grpc_status.h"
#include "common/rpc/proto_convert.h"
#include "common/sampling/text_stream.h"
#include "router/request_validation.h"
#include "router/worker_selection.h"
#include "worker.grpc.pb.h"

namespace pdserve::router {

// One Generate call: its request, the workers serving it and the text stream to the client.
class RouterService::Call {
 public:
  // `write` sends one message to the client; false when the client is gone.
  using Writer = std::function<bool(const v1::GenerateResponse&)>;
  Call(RouterService& service, grpc::CallbackServerContext& context, Writer write,
       absl::Time arrival)
      : service_(service), context_(context), write_(std::move(write)), arrival_(arrival) {}

  absl::Status Run(const v1::GenerateRequest& request);
  RequestRecord& record() { return record_; }

 private:
  enum class Step { kContinue, kLength, kEos, kStop };

  std::unique_ptr<grpc::ClientContext> WorkerContext() const;
  // The worker's failure as the client sees it: the worker's code, a message naming it.
  absl::Status WorkerError(const WorkerSnapshot& worker, absl::string_view role,
                           const grpc::Status& status) const;
  // One generated token: end-of-generation check, text, chunk to the client.
  absl::StatusOr<Step> OnToken(int32_t token, const WorkerSnapshot& from);
  absl::Status WriteChunk(std::string text);
  absl::Status Finish(absl::string_view finish_reason, const std::string& request_id,
                      const WorkerSnapshot& prefill, const WorkerSnapshot& decode);

  RouterService& service_;
  grpc::CallbackServerContext& context_;
  const Writer write_;
  const absl::Time arrival_;
  RequestRecord record_;

  ValidatedRequest request_;
  std::unique_ptr<sampling::TextStream> text_;
  std::vector<int32_t> pending_ids_;  // tokens whose text has not been sent yet
  int32_t previous_token_ = -1;
  int32_t n_completion_ = 0;
  bool first_chunk_sent_ = false;
  absl::Time first_chunk_time_;
};

std::unique_ptr<grpc::ClientContext> RouterService::Call::WorkerContext() const {
  // Carries the client's deadline and cancellation to the worker call.
  std::unique_ptr<grpc::ClientContext> context = grpc::ClientContext::FromCallbackServerContext(context_);
  // The earlier of this and the client's deadline applies.
  context->set_deadline(
      absl::ToChronoTime(arrival_ + service_.options_.max_request_time));
  return context;
}

absl::Status RouterService::Call::WorkerError(const WorkerSnapshot& worker, absl::string_view role,
                                              const grpc::Status& status) const {
  if (context_.IsCancelled()) return absl::CancelledError("the client cancelled the request");
  const absl::Status s = rpc::FromGrpcStatus(status);
  return absl::Status(s.code(), absl::StrCat(role, " worker '", worker.worker_id, "' (",
                                             worker.address, "): ", s.message()));
}

absl::Status RouterService::Call::WriteChunk(std::string text) {
  v1::GenerateResponse response;
  v1::TextChunk* chunk = response.mutable_chunk();
  chunk->set_text(std::move(text));
  chunk->mutable_token_ids()->Add(pending_ids_.begin(), pending_ids_.end());
  pending_ids_.clear();
  if (!write_(response)) return absl::CancelledError("the client went away");
  if (!first_chunk_sent_) {
    first_chunk_sent_ = true;
    first_chunk_time_ = service_.clock_();
  }
  return absl::OkStatus();
}

absl::StatusOr<RouterService::Call::Step> RouterService::Call::OnToken(int32_t token,
                                                                       const WorkerSnapshot& from) {
  const tokenizer::Tokenizer& tok = *service_.model_.tokenizer;
  if (token < 0 || token >= tok.vocab_size()) {
    return absl::InternalError(absl::StrCat("worker '", from.worker_id, "' (", from.address,
                                            ") sent token ", token, ", outside the vocabulary of ",
                                            tok.vocab_size()));
  }
  if (!request_.ignore_eos) {
    const std::vector<int32_t>& ends = tok.end_of_generation_ids();
    if (std::find(ends.begin(), ends.end(), token) != ends.end()) return Step::kEos;
  }
  ++n_completion_;
  pending_ids_.push_back(token);
  sampling::TextStreamStep step = text_->Push(tok.TokenText(token, previous_token_));
  previous_token_ = token;
  if (!step.text.empty()) {
    if (absl::Status s = WriteChunk(std::move(step.text)); !s.ok()) return s;
  }
  if (step.stopped) return Step::kStop;
  if (n_completion_ >= request_.max_tokens) return Step::kLength;
  return Step::kContinue;
}

absl::Status RouterService::Call::Finish(absl::string_view finish_reason,
                                         const std::string& request_id,
                                         const WorkerSnapshot& prefill,
                                         const WorkerSnapshot& decode) {
  std::string rest = text_->Flush();
  if (!rest.empty() || !pending_ids_.empty()) {
    if (absl::Status s = WriteChunk(std::move(rest)); !s.ok()) return s;
  }
  const absl::Time end = service_.clock_();
  record_.e2e_seconds = absl::ToDoubleSeconds(end - arrival_);
  record_.ttft_seconds =
      absl::ToDoubleSeconds((first_chunk_sent_ ? first_chunk_time_ : end) - arrival_);
  record_.completion_tokens = n_completion_;
  record_.tpot_seconds = n_completion_ > 1 ? (record_.e2e_seconds - record_.ttft_seconds) /
                                                 static_cast<double>(n_completion_ - 1)
                                           : 0;
  v1::GenerateResponse response;
  v1::GenerateFinal* final_message = response.mutable_final();
  final_message->set_finish_reason(std::string(finish_reason));
  final_message->mutable_usage()->set_prompt_tokens(static_cast<int32_t>(record_.prompt_tokens));
  final_message->mutable_usage()->set_completion_tokens(n_completion_);
  v1::RequestTiming* timing = final_message->mutable_timing();
  timing->set_queue_seconds(record_.queue_seconds);
  timing->set_ttft_seconds(record_.ttft_seconds);
  timing->set_tpot_seconds(record_.tpot_seconds);
  timing->set_e2e_seconds(record_.e2e_seconds);
  final_message->set_request_id(request_id);
  final_message->set_prefill_worker(prefill.worker_id);
  final_message->set_decode_worker(decode.worker_id);
  if (!write_(response)) return absl::CancelledError("the client went away");
  return absl::OkStatus();
}

absl::Status RouterService::Call::Run(const v1::GenerateRequest& request) {
  absl::StatusOr<ValidatedRequest> validated = ValidateGenerateRequest(request, service_.model_);
  if (!validated.ok()) return validated.status();
  request_ = *std::move(validated);
  record_.prompt_tokens = static_cast<int64_t>(request_.prompt_ids.size());
  text_ = std::make_unique<sampling::TextStream>(request_.stop);
  previous_token_ = request_.prompt_ids.back();
  // Workers see an id no other request has, even one the client chose or a router before a
  // restart made; the client sees the id it chose (or the one made for it).
  const std::string worker_request_id = absl::StrCat(
      request.request_id().empty() ? "req" : request.request_id(), "-", service_.instance_id_, "-",
      service_.next_request_number_.fetch_add(1));
  const std::string request_id =
      request.request_id().empty() ? worker_request_id : request.request_id();

  // Fail fast, before reserving decode room, when no prefill worker could take the request.
  const int64_t n_tokens = record_.prompt_tokens + request_.max_tokens;
  std::vector<WorkerSnapshot> workers = service_.registry_.Snapshot();
  if (absl::StatusOr<WorkerSnapshot> p = SelectPrefillWorker(workers); !p.ok()) return p.status();
  absl::StatusOr<WorkerSnapshot> decode = SelectDecodeWorker(workers, n_tokens);
  if (!decode.ok()) return decode.status();
  service_.registry_.NoteDispatched(decode->worker_id,
                                    KvBlocksNeeded(n_tokens, decode->kv_layout.block_size()));
  service_.stats_.RecordDispatch(decode->worker_id);
  record_.decode_worker = decode->worker_id;

  v1::DecodeRequest decode_request;
  decode_request.set_request_id(worker_request_id);
  decode_request.mutable_prompt_ids()->Add(request_.prompt_ids.begin(), request_.prompt_ids.end());
  decode_request.set_max_tokens(request_.max_tokens);
  *decode_request.mutable_sampling() = rpc::SamplingToProto(request_.sampling);
  decode_request.set_ignore_eos(request_.ignore_eos);
  std::unique_ptr<grpc::ClientContext> decode_context = WorkerContext();
  v1::DecodeWorker::Stub decode_stub(service_.ChannelTo(decode->address));
  std::unique_ptr<grpc::ClientReader<v1::DecodeEvent>> decode_stream =
      decode_stub.Decode(decode_context.get(), decode_request);
  // Ends the decode call early (stop string, end token, errors): cancelling frees its blocks.
  auto cancel_decode = [&] {
    decode_context->TryCancel();
    decode_stream->Finish();
  };

  v1::DecodeEvent event;
  if (!decode_stream->Read(&event)) return WorkerError(*decode, "decode", decode_stream->Finish());
  if (!event.has_reserved()) {
    cancel_decode();
    return absl::InternalError(absl::StrCat("decode worker '", decode->worker_id,
                                            "' did not answer `reserved` first"));
  }

  absl::StatusOr<WorkerSnapshot> prefill = SelectPrefillWorker(service_.registry_.Snapshot());
  if (!prefill.ok()) {
    cancel_decode();
    return prefill.status();
  }
  service_.registry_.NoteDispatched(prefill->worker_id, 0);
  service_.stats_.RecordDispatch(prefill->worker_id);
  record_.prefill_worker = prefill->worker_id;

  v1::PrefillRequest prefill_request;
  prefill_request.set_request_id(worker_request_id);
  prefill_request.mutable_prompt_ids()->Add(request_.prompt_ids.begin(),
                                            request_.prompt_ids.end());
  *prefill_request.mutable_sampling() = rpc::SamplingToProto(request_.sampling);
  prefill_request.set_decode_address(decode->address);
  *prefill_request.mutable_handoff() = event.reserved().handoff();
  v1::PrefillResponse prefill_response;
  const absl::Time prefill_start = service_.clock_();
  {
    std::unique_ptr<grpc::ClientContext> prefill_context = WorkerContext();
    v1::PrefillWorker::Stub prefill_stub(service_.ChannelTo(prefill->address));
    const grpc::Status status =
        prefill_stub.Prefill(prefill_context.get(), prefill_request, &prefill_response);
    if (!status.ok()) {
      cancel_decode();
      return WorkerError(*prefill, "prefill", status);
    }
  }
  record_.queue_seconds =
      absl::ToDoubleSeconds(prefill_start - arrival_) + prefill_response.queue_seconds();
  if (prefill_response.has_transfer()) {
    service_.stats_.RecordTransfer(prefill->worker_id, decode->worker_id,
                                   prefill_response.transfer());
  }

  absl::StatusOr<Step> step = OnToken(prefill_response.first_token(), *prefill);
  while (step.ok() && *step == Step::kContinue) {
    if (!decode_stream->Read(&event)) {
      const grpc::Status status = decode_stream->Finish();
      if (!status.ok()) return WorkerError(*decode, "decode", status);
      return absl::InternalError(absl::StrCat("decode worker '", decode->worker_id,
                                              "' ended the stream without `finished`"));
    }
    if (event.has_token()) {
      step = OnToken(event.token().token_id(), *decode);
    } else if (event.has_finished()) {
      decode_stream->Finish();
      const std::string& reason = event.finished().finish_reason();
      return Finish(reason.empty() ? "length" : reason, request_id, *prefill, *decode);
    }
  }
  cancel_decode();
  if (!step.ok()) return step.status();
  switch (*step) {
    case Step::kEos: return Finish("eos", request_id, *prefill, *decode);
    case Step::kStop: return Finish("stop", request_id, *prefill, *decode);
    default: return Finish("length", request_id, *prefill, *decode);
  }
}

namespace {

// 16 hex digits from the operating system's random source: unique to this router's lifetime.
std::string NewInstanceId() {
  std::random_device device;
  const uint64_t id = (static_cast<uint64_t>(device()) << 32) | device();
  return absl::StrCat(absl::Hex(id, absl::kZeroPad16));
}

}  // namespace

RouterService::RouterService(const RouterModel& model, WorkerRegistry& registry,
                             RouterStats& stats, Clock clock, RouterOptions options)
    : model_(model), registry_(registry), stats_(stats), clock_(std::move(clock)),
      options_(options), instance_id_(NewInstanceId()) {}

std::shared_ptr<grpc::Channel> RouterService::ChannelTo(const std::string& address) {
  absl::MutexLock lock(&channels_mu_);
  std::shared_ptr<grpc::Channel>& channel = channels_[address];
  if (channel == nullptr) {
    channel = grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
  }
  return channel;
}

// Drives one Generate call: the request runs on its own thread (its worker calls block), and
// each message to the client is one StartWrite that the thread waits on. Deletes itself in
// OnDone, after the thread has called Finish.
class RouterService::GenerateReactor final : public grpc::ServerWriteReactor<grpc::ByteBuffer> {
 public:
  GenerateReactor(RouterService& service, grpc::CallbackServerContext& context,
                  const grpc::ByteBuffer& request)
      : service_(service), context_(context), arrival_(service.clock_()) {
    std::vector<grpc::Slice> slices;
    if (request.Dump(&slices).ok()) {
      for (const grpc::Slice& slice : slices) {
        request_.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
      }
    }
    thread_ = std::thread([this] { Body(); });
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&mu_);
    write_ok_ = ok;
    writing_ = false;
  }

  void OnDone() override {
    thread_.join();
    delete this;
  }

 private:
  bool Write(const v1::GenerateResponse& response) {
    std::string bytes = response.SerializeAsString();
    grpc::Slice slice(bytes);
    grpc::ByteBuffer buffer(&slice, 1);
    {
      absl::MutexLock lock(&mu_);
      writing_ = true;
    }
    // Not under mu_: gRPC may run OnWriteDone on this thread before StartWrite returns.
    StartWrite(&buffer);
    absl::MutexLock lock(&mu_);
    // OnWriteDone always comes, with ok = false when the call is cancelled.
    mu_.Await(absl::Condition(
        +[](bool* writing) { return !*writing; }, &writing_));
    return write_ok_;
  }

  void Body() {
    service_.stats_.RecordArrival();
    Call call(service_, context_, [this](const v1::GenerateResponse& r) { return Write(r); },
              arrival_);
    absl::StatusOr<v1::GenerateRequest> request = ParseGenerateRequest(request_);
    absl::Status status = request.ok() ? call.Run(*request) : request.status();
    RequestRecord& record = call.record();
    if (status.ok()) {
      record.outcome = RequestOutcome::kSucceeded;
    } else if (context_.IsCancelled() || status.code() == absl::StatusCode::kCancelled ||
               status.code() == absl::StatusCode::kDeadlineExceeded) {
      record.outcome = RequestOutcome::kCancelled;
    } else {
      record.outcome = RequestOutcome::kFailed;
    }
    service_.stats_.RecordFinish(record);
    Finish(rpc::ToGrpcStatus(status));  // the last use of `this` on this thread
  }

  RouterService& service_;
  grpc::CallbackServerContext& context_;
  const absl::Time arrival_;
  std::string request_;
  std::thread thread_;
  absl::Mutex mu_;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool write_ok_ ABSL_GUARDED_BY(mu_) = false;
};

grpc::ServerWriteReactor<grpc::ByteBuffer>* RouterService::Generate(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* request) {
  return new GenerateReactor(*this, *context, *request);
}

grpc::Status RouterService::GetStats(grpc::ServerContext* context,
                                     const v1::GetStatsRequest* request,
                                     v1::GetStatsResponse* response) {
  *response = stats_.Get(registry_.Snapshot());
  return grpc::Status::OK;
}

grpc::Status RouterService::ListWorkers(grpc::ServerContext* context,
                                        const v1::ListWorkersRequest* request,
                                        v1::ListWorkersResponse* response) {
  for (const WorkerSnapshot& worker : registry_.Snapshot()) {
    *response->add_workers() = worker.ToProto();
  }
  return grpc::Status::OK;
}

}  // namespace pdserve::router
