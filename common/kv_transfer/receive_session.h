#pragma once
// The transfer layer's receiver side for one sequence (docs/kv-transfer.md): opened by the
// control stream's first message, it checks framing, layout and every block against the
// reservation outside any lock of the decode worker, then has the reservation table commit the
// verified blocks in a short critical section. A transport feeds it either blocks with their
// bytes beside them (ReceiveCopies: grpc) or headers of blocks whose bytes are (about to be) in
// the target blocks themselves (BeginInPlace / EndInPlace: shm, tcp).
//
// Any check that fails fails the reservation (its Decode stream ends with the error, its blocks
// return to the pool); a wrong token touches nothing. Not thread-safe; several sessions of one
// reservation may run at once (a control stream and a TCP connection).

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "common/kv/kv_block_pool.h"
#include "common/kv_transfer/kv_blocks.h"
#include "common/kv_transfer/kv_send_stream.h"
#include "common/kv_transfer/reservation_table.h"

namespace pdserve::kv_transfer {

class KvReceiveSession {
 public:
  // Opens the reservation `token` names. PermissionDenied (nothing touched) for a wrong token.
  static absl::StatusOr<KvReceiveSession> Open(KvReservationTable& table, kv::KvBlockPool& pool,
                                               const std::string& token);
  // Opens it and checks the sender's description: layout, model fingerprint and prompt size must
  // equal the reservation's (a mismatch fails it: FailedPrecondition / InvalidArgument naming
  // both sides), the transport must be one this pool can take and, unless
  // `accepted_transports` is empty, one of them (FailedPrecondition naming what is offered).
  static absl::StatusOr<KvReceiveSession> Open(
      KvReservationTable& table, kv::KvBlockPool& pool, const SenderHello& hello,
      absl::Span<const std::string> accepted_transports = {});

  // Blocks with their bytes: each header checked (index in range, not repeated, n_tokens, size,
  // checksum of `bytes`), then copied into the target blocks in one WriteBlocks and committed.
  absl::Status ReceiveCopies(absl::Span<const IncomingBlock> blocks);

  // Blocks written into the target blocks directly: BeginInPlace checks the headers, pins the
  // blocks and returns where their bytes go (one span of BlockBytes() per header, host pools
  // only); EndInPlace checks each checksum in place and commits (or fails the reservation with
  // `transport_status` when the bytes did not all arrive). Every successful BeginInPlace must be
  // followed by one EndInPlace with the same headers.
  absl::StatusOr<std::vector<absl::Span<uint8_t>>> BeginInPlace(
      absl::Span<const KvBlockHeader> headers);
  absl::Status EndInPlace(absl::Span<const KvBlockHeader> headers, absl::Status transport_status);

  // Every block is in: completes the reservation with the first generated token.
  absl::Status Complete(int32_t first_token);
  // The sender went away (or sent something unusable) before Complete: fails the reservation.
  void Fail(const absl::Status& error);

  const ReservationView& reservation() const { return view_; }
  int64_t blocks_received() const { return n_blocks_received_; }

 private:
  KvReceiveSession(KvReservationTable& table, kv::KvBlockPool& pool, std::string token,
                   ReservationView view)
      : table_(&table), pool_(&pool), token_(std::move(token)), view_(std::move(view)) {}

  // Index range, n_tokens and no repeat within `headers`. Fails the reservation on a problem.
  absl::Status CheckHeaders(absl::Span<const KvBlockHeader> headers);
  std::string Where(int64_t index) const;

  KvReservationTable* table_;
  kv::KvBlockPool* pool_;
  std::string token_;
  ReservationView view_;
  int64_t n_blocks_received_ = 0;
};

}  // namespace pdserve::kv_transfer
