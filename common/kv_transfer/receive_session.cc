#include "common/kv_transfer/receive_session.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/kv_transfer/handoff.h"

namespace pdserve::kv_transfer {

absl::StatusOr<KvReceiveSession> KvReceiveSession::Open(KvReservationTable& table,
                                                        kv::KvBlockPool& pool,
                                                        const std::string& token) {
  absl::StatusOr<ReservationView> view = table.Lookup(token);
  if (!view.ok()) return view.status();
  return KvReceiveSession(table, pool, token, *std::move(view));
}

absl::StatusOr<KvReceiveSession> KvReceiveSession::Open(
    KvReservationTable& table, kv::KvBlockPool& pool, const SenderHello& hello,
    absl::Span<const std::string> accepted_transports) {
  absl::StatusOr<KvReceiveSession> session = Open(table, pool, hello.transfer_token);
  if (!session.ok()) return session.status();
  const ReservationView& view = session->view_;
  const std::string where = absl::StrCat("request '", view.request_id, "': ");
  absl::Status problem;
  if (hello.request_id != view.request_id) {
    problem = absl::InvalidArgumentError(absl::StrCat(
        where, "the KV stream names request '", hello.request_id, "' for this reservation"));
  } else if (absl::Status s =
                 CheckSameModelAndLayout("sender", hello.layout, hello.model_fingerprint,
                                         table.layout(), table.model_fingerprint());
             !s.ok()) {
    problem = absl::FailedPreconditionError(absl::StrCat(where, "KV ", s.message()));
  } else if (hello.n_prompt_tokens != view.n_prompt_tokens) {
    problem = absl::InvalidArgumentError(absl::StrCat(where, "KV is for ", hello.n_prompt_tokens,
                                                      " prompt tokens but the request has ",
                                                      view.n_prompt_tokens));
  } else if (!IsTransportName(hello.transport)) {
    problem = absl::InvalidArgumentError(
        absl::StrCat(where, "unknown KV transport '", hello.transport, "'"));
  } else if (!accepted_transports.empty() &&
             std::find(accepted_transports.begin(), accepted_transports.end(),
                       hello.transport) == accepted_transports.end()) {
    problem = absl::FailedPreconditionError(
        absl::StrCat(where, "this decode worker does not take KV over ", hello.transport,
                     " (it offers ", absl::StrJoin(accepted_transports, ", "), ")"));
  } else if (hello.transport != kGrpcTransport && !pool.on_host()) {
    problem = absl::FailedPreconditionError(absl::StrCat(
        where, "the ", hello.transport, " transport needs a KV pool in host memory"));
  }
  if (!problem.ok()) {
    table.Fail(hello.transfer_token, problem);
    return problem;
  }
  return session;
}

std::string KvReceiveSession::Where(int64_t index) const {
  return absl::StrCat("request '", view_.request_id, "' KV block ", index, ": ");
}

absl::Status KvReceiveSession::CheckHeaders(absl::Span<const KvBlockHeader> headers) {
  const int64_t n_blocks = static_cast<int64_t>(view_.target_blocks.size());
  const int64_t block_size = table_->layout().block_size;
  absl::Status problem;
  std::vector<int64_t> seen;
  for (const KvBlockHeader& header : headers) {
    if (header.index < 0 || header.index >= n_blocks) {
      problem = absl::InvalidArgumentError(
          absl::StrCat(Where(header.index), "index out of range [0, ", n_blocks, ")"));
      break;
    }
    if (std::find(seen.begin(), seen.end(), header.index) != seen.end()) {
      problem =
          absl::InvalidArgumentError(absl::StrCat(Where(header.index), "sent more than once"));
      break;
    }
    seen.push_back(header.index);
    const int64_t want = std::min(block_size, view_.n_prompt_tokens - header.index * block_size);
    if (header.n_tokens != want) {
      problem = absl::InvalidArgumentError(absl::StrCat(
          Where(header.index), "n_tokens is ", header.n_tokens, ", expected ", want));
      break;
    }
  }
  if (!problem.ok()) table_->Fail(token_, problem);
  return problem;
}

absl::Status KvReceiveSession::ReceiveCopies(absl::Span<const IncomingBlock> blocks) {
  std::vector<KvBlockHeader> headers;
  headers.reserve(blocks.size());
  for (const IncomingBlock& block : blocks) headers.push_back(block.header);
  if (absl::Status s = CheckHeaders(headers); !s.ok()) return s;
  const kv::KvLayout& layout = table_->layout();
  for (const IncomingBlock& block : blocks) {
    absl::Status problem;
    if (block.bytes.size() != layout.BlockBytes()) {
      problem = absl::InvalidArgumentError(
          absl::StrCat(Where(block.header.index), "data is ", block.bytes.size(),
                       " bytes, the layout (", layout.DebugString(), ") needs ",
                       layout.BlockBytes()));
    } else if (const uint64_t sum = BlockChecksum(block.bytes); sum != block.header.checksum) {
      problem = absl::DataLossError(absl::StrCat(Where(block.header.index),
                                                 "checksum mismatch (sent ",
                                                 block.header.checksum, ", computed ", sum, ")"));
    }
    if (!problem.ok()) {
      table_->Fail(token_, problem);
      return problem;
    }
  }
  std::vector<int64_t> indices;
  std::vector<kv::BlockId> targets;
  std::vector<absl::Span<const uint8_t>> sources;
  for (const IncomingBlock& block : blocks) {
    indices.push_back(block.header.index);
    targets.push_back(view_.target_blocks[block.header.index]);
    sources.push_back(block.bytes);
  }
  if (absl::Status s = table_->Pin(token_, indices); !s.ok()) return s;
  // The copy runs with only these blocks pinned: decode steps go on meanwhile.
  absl::Status written = pool_->WriteBlocks(targets, sources);
  if (absl::Status s = table_->Unpin(token_, indices, written); !s.ok()) return s;
  n_blocks_received_ += static_cast<int64_t>(blocks.size());
  return absl::OkStatus();
}

absl::StatusOr<std::vector<absl::Span<uint8_t>>> KvReceiveSession::BeginInPlace(
    absl::Span<const KvBlockHeader> headers) {
  if (!pool_->on_host()) {
    absl::Status problem = absl::FailedPreconditionError(absl::StrCat(
        "request '", view_.request_id, "': KV written in place needs a pool in host memory"));
    table_->Fail(token_, problem);
    return problem;
  }
  if (absl::Status s = CheckHeaders(headers); !s.ok()) return s;
  std::vector<int64_t> indices;
  for (const KvBlockHeader& header : headers) indices.push_back(header.index);
  if (absl::Status s = table_->Pin(token_, indices); !s.ok()) return s;
  const size_t block_bytes = table_->layout().BlockBytes();
  std::vector<absl::Span<uint8_t>> spans;
  for (const KvBlockHeader& header : headers) {
    spans.push_back(absl::MakeSpan(pool_->BlockData(view_.target_blocks[header.index]),
                                   block_bytes));
  }
  return spans;
}

absl::Status KvReceiveSession::EndInPlace(absl::Span<const KvBlockHeader> headers,
                                          absl::Status transport_status) {
  std::vector<int64_t> indices;
  for (const KvBlockHeader& header : headers) indices.push_back(header.index);
  absl::Status verdict = transport_status;
  const size_t block_bytes = table_->layout().BlockBytes();
  for (size_t i = 0; verdict.ok() && i < headers.size(); ++i) {
    const KvBlockHeader& header = headers[i];
    const uint64_t sum = BlockChecksum(
        absl::MakeConstSpan(pool_->BlockData(view_.target_blocks[header.index]), block_bytes));
    if (sum != header.checksum) {
      verdict = absl::DataLossError(absl::StrCat(Where(header.index), "checksum mismatch (sent ",
                                                 header.checksum, ", computed ", sum, ")"));
    }
  }
  if (absl::Status s = table_->Unpin(token_, indices, verdict); !s.ok()) return s;
  n_blocks_received_ += static_cast<int64_t>(headers.size());
  return absl::OkStatus();
}

absl::Status KvReceiveSession::Complete(int32_t first_token) {
  return table_->Complete(token_, first_token);
}

void KvReceiveSession::Fail(const absl::Status& error) { table_->Fail(token_, error); }

}  // namespace pdserve::kv_transfer
