#include "common/kv_transfer/kv_lease.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace pdserve::kv_transfer {

absl::Time KvLease::expiry() const {
  const absl::Time cap = start_ + options_.max;
  return touched_ ? std::min(last_activity_ + options_.idle, cap) : cap;
}

absl::Status KvLease::Check(absl::Time now) const {
  if (now >= start_ + options_.max) {
    return absl::AbortedError(absl::StrCat("KV lease ran out: the handoff took longer than ",
                                           absl::FormatDuration(options_.max)));
  }
  if (touched_ && now >= last_activity_ + options_.idle) {
    return absl::AbortedError(absl::StrCat("KV lease ran out: no KV arrived for ",
                                           absl::FormatDuration(options_.idle)));
  }
  return absl::OkStatus();
}

}  // namespace pdserve::kv_transfer
