#include "decode_node/decode_service.h"

#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/rpc/grpc_status.h"
#include "common/rpc/proto_convert.h"

namespace pdserve::decode {
namespace {

// How often a handler re-checks cancellation and deadlines while it waits.
constexpr absl::Duration kPoll = absl::Milliseconds(20);

// The call's deadline; InfiniteFuture when it has none (gRPC gives a far-future time point).
absl::Time CallDeadline(const grpc::ServerContext& context) {
  const std::chrono::system_clock::time_point deadline = context.deadline();
  if (deadline >= std::chrono::system_clock::now() + std::chrono::hours(24 * 365)) {
    return absl::InfiniteFuture();
  }
  return absl::FromChrono(deadline);
}

// Ends the consumer's hold on a sequence whatever path leaves the handler.
class ScopedRelease {
 public:
  ScopedRelease(DecodeScheduler& scheduler, std::string id)
      : scheduler_(scheduler), id_(std::move(id)) {}
  ~ScopedRelease() { scheduler_.Release(id_); }

 private:
  DecodeScheduler& scheduler_;
  std::string id_;
};

}  // namespace

v1::WorkerLoad WorkerLoadToProto(const SchedulerLoad& load) {
  v1::WorkerLoad out;
  out.set_queue_length(static_cast<int32_t>(load.queue_length));
  out.set_active_sequences(static_cast<int32_t>(load.active_sequences));
  out.set_free_kv_blocks(load.free_kv_blocks);
  out.set_total_kv_blocks(load.total_kv_blocks);
  return out;
}

grpc::Status DecodeWorkerService::Decode(grpc::ServerContext* context,
                                         const v1::DecodeRequest* request,
                                         grpc::ServerWriter<v1::DecodeEvent>* writer) {
  DecodeSpec spec;
  spec.request_id = request->request_id();
  spec.prompt_ids.assign(request->prompt_ids().begin(), request->prompt_ids().end());
  spec.max_tokens = request->max_tokens();
  spec.sampling = rpc::SamplingFromProto(request->sampling());
  spec.ignore_eos = request->ignore_eos();

  const absl::Time deadline = CallDeadline(*context);
  absl::StatusOr<int64_t> n_blocks =
      scheduler_.Reserve(spec, deadline, [context] { return context->IsCancelled(); });
  if (!n_blocks.ok()) return rpc::ToGrpcStatus(n_blocks.status());
  ScopedRelease release(scheduler_, spec.request_id);

  v1::DecodeEvent reserved;
  reserved.mutable_reserved()->set_kv_blocks(static_cast<int32_t>(*n_blocks));
  if (!writer->Write(reserved)) {
    return grpc::Status(grpc::StatusCode::CANCELLED, "the client went away");
  }

  const absl::Time kv_deadline = std::min(deadline, absl::Now() + options_.kv_timeout);
  std::vector<SequenceEvent> events;
  while (true) {
    events.clear();
    const absl::Time now = absl::Now();
    absl::Status s = scheduler_.WaitEvents(spec.request_id, now + kPoll, &events);
    if (!s.ok()) return rpc::ToGrpcStatus(s);
    for (const SequenceEvent& event : events) {
      v1::DecodeEvent out;
      switch (event.kind) {
        case SequenceEvent::Kind::kToken:
          out.mutable_token()->set_token_id(event.token_id);
          out.mutable_token()->set_index(static_cast<int32_t>(event.index));
          if (!writer->Write(out)) {
            return grpc::Status(grpc::StatusCode::CANCELLED, "the client went away");
          }
          break;
        case SequenceEvent::Kind::kFinished: {
          v1::DecodeFinished* finished = out.mutable_finished();
          finished->set_finish_reason(event.finish_reason);
          finished->set_completion_tokens(static_cast<int32_t>(event.completion_tokens));
          finished->set_prompt_tokens_computed(static_cast<int32_t>(event.prompt_tokens_computed));
          writer->Write(out);
          return grpc::Status::OK;
        }
        case SequenceEvent::Kind::kError:
          return rpc::ToGrpcStatus(event.error);
      }
    }
    if (context->IsCancelled()) {
      return grpc::Status(grpc::StatusCode::CANCELLED, "the client cancelled the call");
    }
    if (absl::Now() >= deadline) {
      return grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
                          absl::StrCat("request '", spec.request_id, "': deadline passed (",
                                       SequenceStateName(scheduler_.StateOf(spec.request_id)),
                                       ")"));
    }
    if (absl::Now() >= kv_deadline &&
        scheduler_.StateOf(spec.request_id) == SequenceState::kAwaitingKv) {
      return grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
                          absl::StrCat("request '", spec.request_id,
                                       "': its KV did not arrive in time"));
    }
  }
}

grpc::Status KvReceiverService::PushKv(grpc::ServerContext* context,
                                       grpc::ServerReader<v1::KvChunk>* reader,
                                       v1::PushKvResponse* response) {
  v1::KvChunk chunk;
  std::string request_id;
  int64_t n_prompt_tokens = 0;
  int64_t n_blocks = 0;
  bool first = true;
  bool done = false;
  const kv::KvLayout& ours = scheduler_.layout();
  // Fails the sequence (its Decode stream ends with `error`) and answers the sender with it.
  auto fail = [&](absl::Status error) {
    scheduler_.Fail(request_id, error);
    return rpc::ToGrpcStatus(error);
  };
  while (reader->Read(&chunk)) {
    if (first) {
      first = false;
      request_id = chunk.request_id();
      if (request_id.empty()) {
        return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                            "the first KV chunk names no request_id");
      }
      n_prompt_tokens = chunk.n_prompt_tokens();
      // Unknown or not-awaiting requests are answered without failing anyone.
      if (absl::Status s = scheduler_.InstallKv(request_id, n_prompt_tokens, {}); !s.ok()) {
        return rpc::ToGrpcStatus(s);
      }
      if (!chunk.has_layout()) {
        return fail(absl::InvalidArgumentError(
            absl::StrCat("request '", request_id, "': the first KV chunk carries no layout")));
      }
    } else if (done) {
      return fail(absl::InvalidArgumentError(
          absl::StrCat("request '", request_id, "': a KV chunk came after the last one")));
    } else if (!chunk.request_id().empty() && chunk.request_id() != request_id) {
      return fail(absl::InvalidArgumentError(absl::StrCat(
          "KV stream for request '", request_id, "' carries a chunk for '", chunk.request_id(),
          "'")));
    }
    if (chunk.has_layout()) {
      absl::StatusOr<kv::KvLayout> theirs = rpc::KvLayoutFromProto(chunk.layout());
      if (!theirs.ok()) {
        return fail(absl::InvalidArgumentError(absl::StrCat(
            "request '", request_id, "': bad KV layout: ", theirs.status().message())));
      }
      if (!(*theirs == ours)) {
        return fail(absl::InvalidArgumentError(absl::StrCat(
            "request '", request_id, "': KV layout mismatch: sender has ",
            theirs->DebugString(), ", this worker has ", ours.DebugString())));
      }
    }
    std::vector<ReceivedBlock> blocks;
    blocks.reserve(chunk.blocks_size());
    for (const v1::KvBlock& block : chunk.blocks()) {
      ReceivedBlock in;
      in.index = block.index();
      in.n_tokens = block.n_tokens();
      in.data = absl::Span<const uint8_t>(reinterpret_cast<const uint8_t*>(block.data().data()),
                                          block.data().size());
      in.checksum = block.checksum();
      blocks.push_back(in);
    }
    // On a bad block the scheduler has already failed the sequence and freed its blocks.
    if (absl::Status s = scheduler_.InstallKv(request_id, n_prompt_tokens, blocks); !s.ok()) {
      return rpc::ToGrpcStatus(s);
    }
    n_blocks += chunk.blocks_size();
    if (chunk.last()) {
      if (absl::Status s = scheduler_.CompleteKv(request_id, chunk.first_token()); !s.ok()) {
        return rpc::ToGrpcStatus(s);
      }
      done = true;
    }
  }
  if (first) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "the KV stream carried no chunk");
  }
  if (!done) {
    return fail(absl::InvalidArgumentError(absl::StrCat(
        "request '", request_id, "': the KV stream ended before its last chunk",
        context->IsCancelled() ? " (the sender cancelled)" : "")));
  }
  response->set_blocks_received(static_cast<int32_t>(n_blocks));
  return grpc::Status::OK;
}

}  // namespace pdserve::decode
