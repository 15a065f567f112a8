#pragma once
// The receiver side's view of the place KV lands (docs/kv-transfer.md): reservations of blocks
// in the decode pool, each opened by its transfer token. The decode scheduler implements it; a
// receive session (receive_session.h) drives it. Every method is a short critical section of
// the implementation: block bytes are checked and copied between Pin and Unpin, outside it, so
// that KV arriving never holds up the decode steps.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "common/kv/kv_block_pool.h"
#include "common/kv/kv_layout.h"

namespace pdserve::kv_transfer {

// What a receive session knows of its reservation.
struct ReservationView {
  std::string request_id;
  int64_t n_prompt_tokens = 0;
  std::vector<kv::BlockId> target_blocks;  // one per prompt block, in order
};

class KvReservationTable {
 public:
  virtual ~KvReservationTable() = default;

  virtual const kv::KvLayout& layout() const = 0;
  virtual const std::string& model_fingerprint() const = 0;  // empty when unknown

  // The reservation awaiting KV that `token` opens. PermissionDenied when none does (a wrong or
  // used token): nothing is touched.
  virtual absl::StatusOr<ReservationView> Lookup(absl::string_view token) = 0;
  // Before the bytes of prompt blocks `indices` are written or checked in place: they must be
  // in range and neither received nor in flight (else the reservation fails with
  // InvalidArgument); they become in flight and the lease is touched. While any block is in
  // flight, the reservation's blocks stay allocated even if it ends meanwhile. PermissionDenied
  // for a wrong token; FailedPrecondition when it no longer awaits KV (ended, failed).
  virtual absl::Status Pin(absl::string_view token, absl::Span<const int64_t> indices) = 0;
  // After: with `verdict` OK the blocks count as received; otherwise the reservation fails with
  // it. Either way they leave flight (the last one out frees an ended reservation's blocks).
  // Returns the verdict, or the reason the reservation had ended meanwhile.
  virtual absl::Status Unpin(absl::string_view token, absl::Span<const int64_t> indices,
                             absl::Status verdict) = 0;
  // Every prompt block received: the reservation completes with the first generated token
  // (InvalidArgument, failing it, when blocks are missing or the token is outside the
  // vocabulary). The token is used up.
  virtual absl::Status Complete(absl::string_view token, int32_t first_token) = 0;
  // Fails the reservation with `error` (the sender went away, a bad message). No-op when the
  // token opens nothing.
  virtual void Fail(absl::string_view token, const absl::Status& error) = 0;
};

}  // namespace pdserve::kv_transfer
