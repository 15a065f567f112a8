#include "common/kv_transfer/tcp/tcp_kv_connection.h"

#include <sys/socket.h>
#include <sys/uio.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/kv_transfer/receive_session.h"
#include "common/kv_transfer/tcp/tcp_frame.h"
#include "common/kv_transfer/tcp/tcp_socket.h"

namespace pdserve::kv_transfer {
namespace {

// Answers a refused batch and ends the connection (see the header: the linger).
void Refuse(int fd, const absl::Status& error, const TcpKvConnectionOptions& options,
            int wake_fd) {
  const std::string ack = EncodeAck(error);
  const IoLimits limits{.silence = options.frame_timeout, .wake_fd = wake_fd};
  if (!WriteAll(fd, absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(ack.data()), ack.size()),
                limits)
           .ok()) {
    return;
  }
  shutdown(fd, SHUT_WR);
  const IoLimits linger{.deadline = absl::Now() + options.refusal_linger, .wake_fd = wake_fd};
  std::vector<uint8_t> discard(64 * 1024);
  while (absl::Now() < linger.deadline) {
    // Until the peer closes, the linger ends or the receiver stops.
    if (!ReadAll(fd, absl::MakeSpan(discard), linger).ok()) return;
  }
}

// What a reservation fails with when its batch's bytes stopped coming.
absl::Status Broken(const std::string& request_id, const std::string& peer,
                    const absl::Status& read) {
  const absl::StatusCode code = absl::IsDeadlineExceeded(read) ? absl::StatusCode::kDeadlineExceeded
                                                               : absl::StatusCode::kUnavailable;
  const std::string why = absl::IsCancelled(read) ? "the receiver is stopping"
                                                  : std::string(read.message());
  return absl::Status(code, absl::StrCat("request '", request_id, "': KV connection from ", peer,
                                         " broke mid-batch: ", why));
}

// Serves batches until the connection ends; returns why (OK: the peer closed it between
// batches). `last_token` is the token of the last batch committed.
absl::Status ServeBatches(int fd, const std::string& peer, KvReservationTable& table,
                          kv::KvBlockPool& pool, const TcpKvConnectionOptions& options,
                          int wake_fd, std::string& last_token) {
  const IoLimits idle{.silence = options.idle_timeout, .wake_fd = wake_fd};
  const IoLimits frame{.silence = options.frame_timeout, .wake_fd = wake_fd};
  const size_t block_bytes = table.layout().BlockBytes();
  for (;;) {
    if (absl::Status s = WaitReadable(fd, idle); !s.ok()) return s;
    uint8_t prefix_bytes[kFramePrefixBytes];
    size_t n_read = 0;
    if (absl::Status s = ReadAll(fd, absl::MakeSpan(prefix_bytes), frame, &n_read); !s.ok()) {
      return n_read == 0 && absl::IsUnavailable(s) ? absl::OkStatus() : s;
    }
    absl::StatusOr<FramePrefix> prefix = DecodeFramePrefix(prefix_bytes);
    if (!prefix.ok()) {
      absl::Status error = absl::InvalidArgumentError(
          absl::StrCat("KV connection from ", peer, ": ", prefix.status().message()));
      Refuse(fd, error, options, wake_fd);
      return error;
    }
    if (absl::Status s = CheckFramePrefix(*prefix, block_bytes); !s.ok()) {
      s = absl::InvalidArgumentError(absl::StrCat("KV connection from ", peer, ": ", s.message()));
      table.Fail(prefix->token, s);  // no-op for a token that opens nothing
      Refuse(fd, s, options, wake_fd);
      return s;
    }
    std::vector<uint8_t> entries(prefix->n_blocks * kFrameEntryBytes);  // at most 16 KiB
    if (absl::Status s = ReadAll(fd, absl::MakeSpan(entries), frame); !s.ok()) {
      table.Fail(prefix->token, absl::Status(s.code() == absl::StatusCode::kDeadlineExceeded
                                                 ? s.code()
                                                 : absl::StatusCode::kUnavailable,
                                             absl::StrCat("KV connection from ", peer,
                                                          " broke mid-batch: ", s.message())));
      return s;
    }
    const std::vector<KvBlockHeader> headers = DecodeFrameEntries(entries);

    absl::StatusOr<KvReceiveSession> session = KvReceiveSession::Open(table, pool, prefix->token);
    if (!session.ok()) {  // a wrong token: nothing touched, the bytes not read in
      Refuse(fd, session.status(), options, wake_fd);
      return session.status();
    }
    absl::StatusOr<std::vector<absl::Span<uint8_t>>> targets = session->BeginInPlace(headers);
    if (!targets.ok()) {  // the session has failed the reservation
      Refuse(fd, targets.status(), options, wake_fd);
      return targets.status();
    }
    std::vector<iovec> iov;
    iov.reserve(targets->size());
    for (absl::Span<uint8_t> target : *targets) iov.push_back({target.data(), target.size()});
    if (absl::Status s = ReadAll(fd, absl::MakeSpan(iov), frame); !s.ok()) {
      absl::Status broken = Broken(session->reservation().request_id, peer, s);
      (void)session->EndInPlace(headers, broken);
      return broken;
    }
    if (absl::Status verdict = session->EndInPlace(headers, absl::OkStatus()); !verdict.ok()) {
      Refuse(fd, verdict, options, wake_fd);
      return verdict;
    }
    last_token = prefix->token;
    const std::string ack = EncodeAck(absl::OkStatus());
    if (absl::Status s = WriteAll(
            fd, absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(ack.data()), ack.size()),
            frame);
        !s.ok()) {
      return s;
    }
  }
}

}  // namespace

void ServeKvConnection(int fd, const std::string& peer, KvReservationTable& table,
                       kv::KvBlockPool& pool, const TcpKvConnectionOptions& options,
                       int wake_fd) {
  std::string last_token;
  const absl::Status end = ServeBatches(fd, peer, table, pool, options, wake_fd, last_token);
  if (last_token.empty()) return;
  // A sender closes its connection only once decode has acknowledged the whole handoff, which
  // uses the token up: for a completed handoff this is a no-op.
  table.Fail(last_token,
             absl::AbortedError(absl::StrCat(
                 "KV connection from ", peer, " ended before its handoff completed: ",
                 end.ok() ? "the sender closed it"
                 : absl::IsCancelled(end) ? "the receiver is stopping"
                                          : end.message())));
}

}  // namespace pdserve::kv_transfer
