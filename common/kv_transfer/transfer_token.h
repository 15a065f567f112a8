#pragma once
// The one-time secret of a KV handoff (docs/kv-transfer.md): the decode worker makes one per
// reservation and accepts KV for it only from a sender that presents it. Knowing a request id is
// not enough.

#include <string>

#include "absl/strings/string_view.h"

namespace pdserve::kv_transfer {

inline constexpr size_t kTransferTokenBytes = 16;

// kTransferTokenBytes bytes from the operating system's random source (not guessable).
std::string NewTransferToken();

// Compares in time independent of where the bytes differ.
bool TransferTokensEqual(absl::string_view a, absl::string_view b);

// A short, non-secret tag of a token for logs: the first 4 bytes in hex.
std::string TransferTokenTag(absl::string_view token);

}  // namespace pdserve::kv_transfer
