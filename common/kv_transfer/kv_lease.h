#pragma once
// The lease of a KV reservation (docs/kv-transfer.md): a reservation lives for at most `max` in
// all, and once its KV has begun to arrive, while it keeps arriving (at most `idle` between two
// pieces of it), whatever the transport. Before the first piece only `max` applies: the request
// may still wait in a prefill worker's queue. When the lease runs out, only that request fails
// (ABORTED, naming the limit) and its blocks return to the pool. Plain value type; the owner
// serializes access.

#include <algorithm>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace pdserve::kv_transfer {

struct KvLeaseOptions {
  absl::Duration idle = absl::Seconds(10);  // longest gap between two pieces of KV
  absl::Duration max = absl::Seconds(60);   // longest whole handoff, reservation to completion
};

class KvLease {
 public:
  KvLease() = default;
  KvLease(const KvLeaseOptions& options, absl::Time start)
      : options_(options), start_(start), last_activity_(start) {}

  // KV arrived (or is arriving) at `now`: the idle clock (re)starts.
  void Touch(absl::Time now) {
    last_activity_ = std::max(last_activity_, now);
    touched_ = true;
  }
  // OK while the lease holds at `now`; otherwise ABORTED naming the limit that ran out.
  absl::Status Check(absl::Time now) const;
  // When the lease runs out unless touched before.
  absl::Time expiry() const;
  const KvLeaseOptions& options() const { return options_; }

 private:
  KvLeaseOptions options_;
  absl::Time start_ = absl::InfinitePast();
  absl::Time last_activity_ = absl::InfinitePast();
  bool touched_ = false;  // the idle limit applies from the first Touch
};

}  // namespace pdserve::kv_transfer
