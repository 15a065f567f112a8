#include "common/kv_transfer/grpc/kv_receiver_service.h"

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

}  // namespace

grpc::Status KvReceiverService::PushKv(grpc::ServerContext* context,
                                       grpc::ServerReader<v1::KvChunk>* reader,
                                       v1::PushKvResponse* response) {
  v1::KvChunk chunk;
  if (!reader->Read(&chunk)) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "the KV stream carried no chunk");
  }
  absl::StatusOr<SenderHello> hello = HelloFromChunk(chunk);
  if (!hello.ok()) {
    // A token holder that sent a broken hello fails its reservation; anyone else touches nothing.
    if (!absl::IsPermissionDenied(hello.status())) {
      table_.Fail(chunk.transfer_token(), hello.status());
    }
    return rpc::ToGrpcStatus(hello.status());
  }
  absl::StatusOr<KvReceiveSession> session =
      KvReceiveSession::Open(table_, pool_, *hello, accepted_);
  if (!session.ok()) return rpc::ToGrpcStatus(session.status());

  bool done = false;
  int64_t n_blocks = 0;
  do {
    absl::Status problem;
    if (done) {
      problem = absl::InvalidArgumentError(absl::StrCat(
          "request '", hello->request_id, "': a KV chunk came after the last one"));
    } else if (!chunk.request_id().empty() && chunk.request_id() != hello->request_id) {
      problem = absl::InvalidArgumentError(absl::StrCat("KV stream for request '",
                                                        hello->request_id,
                                                        "' carries a chunk for '",
                                                        chunk.request_id(), "'"));
    }
    if (!problem.ok()) {
      session->Fail(problem);
      return rpc::ToGrpcStatus(problem);
    }
    if (absl::Status s = ReceiveChunk(*session, hello->transport, chunk); !s.ok()) {
      return rpc::ToGrpcStatus(s);
    }
    n_blocks += chunk.blocks_size();
    if (chunk.last()) {
      if (absl::Status s = session->Complete(chunk.first_token()); !s.ok()) {
        return rpc::ToGrpcStatus(s);
      }
      done = true;
    }
  } while (reader->Read(&chunk));
  if (!done) {
    absl::Status error = absl::AbortedError(absl::StrCat(
        "request '", hello->request_id, "': the KV stream ended before its last chunk",
        context->IsCancelled() ? " (the sender cancelled or went away)" : ""));
    session->Fail(error);
    return rpc::ToGrpcStatus(error);
  }
  response->set_blocks_received(static_cast<int32_t>(n_blocks));
  return grpc::Status::OK;
}

}  // namespace pdserve::kv_transfer
