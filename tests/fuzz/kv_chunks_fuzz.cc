// The decode side of a KV handoff's control stream (KvReceiver.PushKv): a sequence of KvChunk
// messages goes through the functions the gRPC receiver calls (HelloFromChunk, then a
// KvReceiveSession over a reservation of a small pool) in the order it calls them. Whatever
// arrives, the reservation ends either complete or failed, and none of its blocks stays pinned
// or leaks out of the pool.
//
// Input: a flags byte, a byte for the prompt's length, then KvChunk messages as pieces
// (fuzz_input.h). Flags help the fuzzer past the secrets it cannot guess: 1 puts the
// reservation's real transfer token into the first chunk, 2 fixes every block's checksum,
// 4 reserves fragmented, shuffled blocks, 8 accepts only the grpc transport.
#include <string>
#include <vector>

#include "common/kv/kv_block_pool.h"
#include "common/kv_transfer/grpc/handoff_proto.h"
#include "common/kv_transfer/kv_blocks.h"
#include "common/kv_transfer/receive_session.h"
#include "google/protobuf/stubs/logging.h"
#include "kv_transfer.pb.h"
#include "tests/common/kv_transfer/fake_reservation_table.h"
#include "tests/fuzz/fuzz_input.h"
#include "tests/fuzz/fuzz_targets.h"

namespace pdserve::fuzz {
namespace {

using kv_transfer::KvReceiveSession;
using kv_transfer::testing::FakeReservationTable;


// One chunk's blocks, as kv_receiver_service.cc's ReceiveChunk takes them. For shm the sender
// writes the bytes into the target blocks before their headers arrive: the block's data, when it
// has the right size, plays that write.
absl::Status ReceiveChunk(KvReceiveSession& session, const std::string& transport,
                          const v1::KvChunk& chunk) {
  if (chunk.blocks_size() == 0) return absl::OkStatus();
  std::vector<kv_transfer::KvBlockHeader> headers;
  for (const v1::KvBlock& block : chunk.blocks()) {
    headers.push_back({block.index(), block.n_tokens(), block.checksum()});
  }
  if (transport == kv_transfer::kGrpcTransport) {
    std::vector<kv_transfer::IncomingBlock> blocks;
    for (int i = 0; i < chunk.blocks_size(); ++i) {
      const std::string& data = chunk.blocks(i).data();
      blocks.push_back({headers[i], absl::Span<const uint8_t>(
                                        reinterpret_cast<const uint8_t*>(data.data()),
                                        data.size())});
    }
    return session.ReceiveCopies(blocks);
  }
  if (transport == kv_transfer::kShmTransport) {
    absl::StatusOr<std::vector<absl::Span<uint8_t>>> spans = session.BeginInPlace(headers);
    if (!spans.ok()) return spans.status();
    PDSERVE_FUZZ_CHECK(spans->size() == headers.size(), "BeginInPlace: one span per header");
    for (int i = 0; i < chunk.blocks_size(); ++i) {
      const std::string& data = chunk.blocks(i).data();
      absl::Span<uint8_t> target = (*spans)[i];
      if (data.size() == target.size()) std::memcpy(target.data(), data.data(), data.size());
    }
    return session.EndInPlace(headers, absl::OkStatus());
  }
  absl::Status error = absl::InvalidArgumentError("KV blocks on the control stream of a " +
                                                  transport + " handoff");
  session.Fail(error);
  return error;
}

// kv_receiver_service.cc's PushKv over `chunks`. True when a last chunk completed the
// reservation (a chunk after it still gets the sender an error, but changes nothing).
bool PushKv(FakeReservationTable& table, kv::KvBlockPool& pool,
            const std::vector<v1::KvChunk>& chunks, const std::vector<std::string>& accepted) {
  if (chunks.empty()) return false;
  absl::StatusOr<kv_transfer::SenderHello> hello = kv_transfer::HelloFromChunk(chunks[0]);
  if (!hello.ok()) {
    if (!absl::IsPermissionDenied(hello.status())) {
      table.Fail(chunks[0].transfer_token(), hello.status());
    }
    return false;
  }
  absl::StatusOr<KvReceiveSession> session = KvReceiveSession::Open(table, pool, *hello, accepted);
  if (!session.ok()) return false;
  bool done = false;
  for (const v1::KvChunk& chunk : chunks) {
    if (done || (!chunk.request_id().empty() && chunk.request_id() != hello->request_id)) {
      session->Fail(absl::InvalidArgumentError("a chunk after the last, or for another request"));
      return done;
    }
    if (!ReceiveChunk(*session, hello->transport, chunk).ok()) return false;
    if (chunk.last()) {
      if (!session->Complete(chunk.first_token()).ok()) return false;
      done = true;
    }
  }
  if (!done) session->Fail(absl::AbortedError("the KV stream ended before its last chunk"));
  return done;
}

}  // namespace

bool InitKvChunksFuzz() {
  google::protobuf::SetLogHandler(nullptr);
  return true;
}

int KvChunksFuzz(const uint8_t* data, size_t size) {
  FuzzInput input(data, size);
  const uint8_t flags = input.TakeByte();
  const int64_t n_prompt_tokens = 1 + input.TakeByte() % 40;
  std::vector<v1::KvChunk> chunks;
  while (!input.empty() && chunks.size() < 64) {
    const absl::string_view piece = input.TakePiece();
    v1::KvChunk chunk;
    if (!chunk.ParseFromArray(piece.data(), static_cast<int>(piece.size()))) continue;
    chunks.push_back(std::move(chunk));
  }

  kv::KvBlockPool pool(FuzzLayout(), kFuzzPoolBlocks);
  FakeReservationTable table(pool, std::string(kFuzzFingerprint));
  const std::string token = table.Reserve(std::string(kFuzzRequestId), n_prompt_tokens,
                                         (flags & kKvChunksShuffle) != 0);
  PDSERVE_FUZZ_CHECK(!token.empty(), "the pool cannot hold the reservation");
  if ((flags & kKvChunksRealToken) != 0 && !chunks.empty()) chunks[0].set_transfer_token(token);
  if ((flags & kKvChunksFixChecksums) != 0) {
    for (v1::KvChunk& chunk : chunks) {
      for (v1::KvBlock& block : *chunk.mutable_blocks()) {
        block.set_checksum(kv_transfer::BlockChecksum(absl::Span<const uint8_t>(
            reinterpret_cast<const uint8_t*>(block.data().data()), block.data().size())));
      }
    }
  }
  std::vector<std::string> accepted;
  if ((flags & kKvChunksGrpcOnly) != 0) accepted.emplace_back(kv_transfer::kGrpcTransport);

  const bool completed = PushKv(table, pool, chunks, accepted);
  const FakeReservationTable::State state = table.StateOf(token);
  PDSERVE_FUZZ_CHECK(completed == (state == FakeReservationTable::State::kComplete),
                     "the stream and the reservation disagree on completion");
  // What a decode worker does when the sequence ends: every block must come back.
  table.Fail(token, absl::CancelledError("fuzz input done"));
  table.ReleaseEnded();
  PDSERVE_FUZZ_CHECK(pool.n_free() == pool.n_total(), "KV blocks leaked (still pinned?)");
  return 0;
}

}  // namespace pdserve::fuzz

PDSERVE_FUZZ_TARGET(pdserve::fuzz::InitKvChunksFuzz, pdserve::fuzz::KvChunksFuzz)
