#include "common/kv_transfer/grpc/kv_receiver_service.h"

#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/kv_transfer/grpc/handoff_proto.h"
#include "common/kv_transfer/receive_session.h"
#include "common/rpc/grpc_status.h"

namespace pdserve::kv_transfer {
namespace {

std::vector<KvBlockHeader> Headers(const v1::KvChunk& chunk) {
  std::vector<KvBlockHeader> headers;
  headers.reserve(chunk.blocks_size());
  for (const v1::KvBlock& block : chunk.blocks()) {
    headers.push_back({block.index(), block.n_tokens(), block.checksum()});
  }
  return headers;
}

// One chunk's blocks, by the session's transport.
absl::Status ReceiveChunk(KvReceiveSession& session, const std::string& transport,
                          const v1::KvChunk& chunk) {
  if (chunk.blocks_size() == 0) return absl::OkStatus();
  if (transport == kGrpcTransport) {
    std::vector<IncomingBlock> blocks;
    blocks.reserve(chunk.blocks_size());
    for (const v1::KvBlock& block : chunk.blocks()) {
      blocks.push_back({{block.index(), block.n_tokens(), block.checksum()},
                        absl::Span<const uint8_t>(
                            reinterpret_cast<const uint8_t*>(block.data().data()),
                            block.data().size())});
    }
    return session.ReceiveCopies(blocks);
  }
  if (transport == kShmTransport) {
    // The sender wrote the bytes into the target blocks before sending their headers.
    const std::vector<KvBlockHeader> headers = Headers(chunk);
    absl::StatusOr<std::vector<absl::Span<uint8_t>>> spans = session.BeginInPlace(headers);
    if (!spans.ok()) return spans.status();
    return session.EndInPlace(headers, absl::OkStatus());
  }
  absl::Status error = absl::InvalidArgumentError(absl::StrCat(
      "request '", session.reservation().request_id, "': KV blocks on the control stream of a ",
      transport, " handoff"));
  session.Fail(error);
  return error;
}

// One PushKv call: the first chunk opens the session, each later one is received as it comes.
// Reactions of one read reactor never overlap (one read in flight at a time), so its state needs
// no lock.
class PushKvReactor final : public grpc::ServerReadReactor<v1::KvChunk> {
 public:
  PushKvReactor(KvReservationTable& table, kv::KvBlockPool& pool,
                const std::vector<std::string>& accepted, grpc::CallbackServerContext* context,
                v1::PushKvResponse* response)
      : table_(table), pool_(pool), accepted_(accepted), context_(context), response_(response) {
    StartRead(&chunk_);
  }

  void OnReadDone(bool ok) override {
    const absl::Status s = ok ? OnChunk() : OnEnd();
    if (!ok || !s.ok()) {
      Finish(rpc::ToGrpcStatus(s));
      return;
    }
    StartRead(&chunk_);
  }
  void OnDone() override { delete this; }

 private:
  absl::Status OnChunk() {
    if (!session_.has_value()) return Open();
    absl::Status problem;
    if (done_) {
      problem = absl::InvalidArgumentError(absl::StrCat(
          "request '", hello_.request_id, "': a KV chunk came after the last one"));
    } else if (!chunk_.request_id().empty() && chunk_.request_id() != hello_.request_id) {
      problem = absl::InvalidArgumentError(absl::StrCat("KV stream for request '",
                                                        hello_.request_id,
                                                        "' carries a chunk for '",
                                                        chunk_.request_id(), "'"));
    }
    if (!problem.ok()) {
      session_->Fail(problem);
      return problem;
    }
    if (absl::Status s = ReceiveChunk(*session_, hello_.transport, chunk_); !s.ok()) return s;
    n_blocks_ += chunk_.blocks_size();
    if (chunk_.last()) {
      if (absl::Status s = session_->Complete(chunk_.first_token()); !s.ok()) return s;
      done_ = true;
    }
    return absl::OkStatus();
  }

  // The first chunk: the hello, then (it may carry blocks too) handled as any other.
  absl::Status Open() {
    absl::StatusOr<SenderHello> hello = HelloFromChunk(chunk_);
    if (!hello.ok()) {
      // A token holder that sent a broken hello fails its reservation; anyone else touches
      // nothing.
      if (!absl::IsPermissionDenied(hello.status())) {
        table_.Fail(chunk_.transfer_token(), hello.status());
      }
      return hello.status();
    }
    absl::StatusOr<KvReceiveSession> session =
        KvReceiveSession::Open(table_, pool_, *hello, accepted_);
    if (!session.ok()) return session.status();
    hello_ = *std::move(hello);
    session_.emplace(*std::move(session));
    return OnChunk();
  }

  // The sender closed the stream (or went away): the status the call ends with.
  absl::Status OnEnd() {
    if (!session_.has_value()) {
      return absl::InvalidArgumentError("the KV stream carried no chunk");
    }
    if (!done_) {
      absl::Status error = absl::AbortedError(absl::StrCat(
          "request '", hello_.request_id, "': the KV stream ended before its last chunk",
          context_->IsCancelled() ? " (the sender cancelled or went away)" : ""));
      session_->Fail(error);
      return error;
    }
    response_->set_blocks_received(static_cast<int32_t>(n_blocks_));
    return absl::OkStatus();
  }

  KvReservationTable& table_;
  kv::KvBlockPool& pool_;
  const std::vector<std::string>& accepted_;
  grpc::CallbackServerContext* const context_;
  v1::PushKvResponse* const response_;
  v1::KvChunk chunk_;
  SenderHello hello_;
  std::optional<KvReceiveSession> session_;
  bool done_ = false;  // the last chunk was received
  int64_t n_blocks_ = 0;
};

class RejectedPushKv final : public grpc::ServerReadReactor<v1::KvChunk> {
 public:
  explicit RejectedPushKv(const grpc::Status& status) { Finish(status); }
  void OnDone() override { delete this; }
};

}  // namespace

grpc::ServerReadReactor<v1::KvChunk>* RejectPushKv(const grpc::Status& status) {
  return new RejectedPushKv(status);
}

grpc::ServerReadReactor<v1::KvChunk>* KvReceiverService::PushKv(
    grpc::CallbackServerContext* context, v1::PushKvResponse* response) {
  if (absl::Status s = rpc::AuthorizeClusterPeer(*context, security_); !s.ok()) {
    return RejectPushKv(rpc::ToGrpcStatus(s));
  }
  return new PushKvReactor(table_, pool_, accepted_, context, response);
}

}  // namespace pdserve::kv_transfer
