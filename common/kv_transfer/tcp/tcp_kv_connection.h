#pragma once
// The decode side of one "tcp" KV connection (tcp_frame.h): batch after batch, the header is
// read and bounded, the token opens a KvReceiveSession, the blocks' bytes are read with readv
// straight into the target blocks (KvReceiveSession::BeginInPlace), checked and committed
// (EndInPlace), and the batch is acked. TcpKvReceiver runs one per accepted connection.
//
// One connection carries one handoff (its batches share a token). A sender closes it only after
// decode has acknowledged the whole handoff on the control stream, so a connection that ends
// otherwise fails the reservation of its last committed batch (Aborted; a no-op once that
// reservation has completed). What ends a connection, and what else it does:
//   - the peer closes between batches, or stays silent for `idle_timeout`: nothing more;
//   - a header that is not ours (magic, version, flags): an InvalidArgument ack, nothing else;
//   - a header out of bounds (n_blocks, block_bytes): an InvalidArgument ack; the reservation
//     its token names (if any) fails;
//   - a wrong token: a PermissionDenied ack; no block is touched, the bytes are not read in;
//   - a block that fails the session's checks: the session has failed the reservation; ack;
//   - the peer closes, resets or stays silent for `frame_timeout` mid-batch, or `wake_fd`
//     fires: that reservation fails (Unavailable / DeadlineExceeded), without an ack.
// After an error ack the connection is shut for writing and the peer's further bytes are
// discarded for at most `refusal_linger`, so that the ack reaches a sender still writing
// rather than being lost to a reset.

#include <string>

#include "absl/time/time.h"
#include "common/kv/kv_block_pool.h"
#include "common/kv_transfer/reservation_table.h"

namespace pdserve::kv_transfer {

struct TcpKvConnectionOptions {
  absl::Duration frame_timeout = absl::Seconds(30);  // silence allowed mid-batch or acking
  absl::Duration idle_timeout = absl::Minutes(10);   // silence allowed between batches
  absl::Duration refusal_linger = absl::Seconds(1);
};

// Serves the connection `fd` (non-blocking; not closed here) until it ends (see above) or
// `wake_fd` becomes readable. `peer` names it in errors. `table` and `pool` (the pool the
// table's reservations hold blocks of) outlive the call.
void ServeKvConnection(int fd, const std::string& peer, KvReservationTable& table,
                       kv::KvBlockPool& pool, const TcpKvConnectionOptions& options,
                       int wake_fd);

}  // namespace pdserve::kv_transfer
