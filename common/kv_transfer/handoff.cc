#include "common/kv_transfer/handoff.h"

#include "absl/strings/str_cat.h"
#include "common/kv_transfer/transfer_token.h"

namespace pdserve::kv_transfer {

bool IsTransportName(absl::string_view name) {
  return name == kGrpcTransport || name == kShmTransport || name == kTcpTransport;
}

absl::StatusOr<TransportMode> ParseTransportMode(absl::string_view name) {
  if (name == "auto") return TransportMode::kAuto;
  if (name == kGrpcTransport) return TransportMode::kGrpc;
  if (name == kShmTransport) return TransportMode::kShm;
  if (name == kTcpTransport) return TransportMode::kTcp;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown KV transport '", name, "': expected auto, grpc, shm or tcp"));
}

std::string TransportModeName(TransportMode mode) {
  switch (mode) {
    case TransportMode::kAuto: return "auto";
    case TransportMode::kGrpc: return std::string(kGrpcTransport);
    case TransportMode::kShm: return std::string(kShmTransport);
    case TransportMode::kTcp: return std::string(kTcpTransport);
  }
  return "auto";
}

bool ModeAllows(TransportMode mode, absl::string_view transport) {
  return mode == TransportMode::kAuto || TransportModeName(mode) == transport;
}

absl::Status CheckSameModelAndLayout(absl::string_view peer, const kv::KvLayout& their_layout,
                                     absl::string_view their_fingerprint,
                                     const kv::KvLayout& our_layout,
                                     absl::string_view our_fingerprint) {
  if (!(their_layout == our_layout)) {
    return absl::FailedPreconditionError(
        absl::StrCat("layout mismatch: ", peer, " has ", their_layout.DebugString(),
                     ", this worker has ", our_layout.DebugString()));
  }
  if (!their_fingerprint.empty() && !our_fingerprint.empty() &&
      their_fingerprint != our_fingerprint) {
    return absl::FailedPreconditionError(absl::StrCat("model mismatch: ", peer, " runs model ",
                                                      their_fingerprint, ", this worker runs ",
                                                      our_fingerprint));
  }
  return absl::OkStatus();
}

absl::Status CheckHandoff(const Handoff& handoff, const kv::KvLayout& our_layout,
                          absl::string_view our_fingerprint, int64_t n_prompt_tokens) {
  const std::string where = absl::StrCat("request ", handoff.request_id, ": KV handoff ");
  if (handoff.transfer_token.size() != kTransferTokenBytes) {
    return absl::InvalidArgumentError(absl::StrCat(where, "carries a transfer token of ",
                                                   handoff.transfer_token.size(),
                                                   " bytes, expected ", kTransferTokenBytes));
  }
  if (absl::Status s = CheckSameModelAndLayout("the decode worker", handoff.layout,
                                                handoff.model_fingerprint, our_layout,
                                                our_fingerprint);
      !s.ok()) {
    return absl::FailedPreconditionError(absl::StrCat(where, s.message()));
  }
  const int64_t block_size = our_layout.block_size;
  const int64_t n_blocks = (n_prompt_tokens + block_size - 1) / block_size;
  if (static_cast<int64_t>(handoff.target_blocks.size()) != n_blocks) {
    return absl::InvalidArgumentError(absl::StrCat(where, "names ", handoff.target_blocks.size(),
                                                   " target blocks for a prompt of ", n_blocks));
  }
  return absl::OkStatus();
}

std::string HostOf(absl::string_view address) {
  if (!address.empty() && address.front() == '[') {
    const size_t close = address.find(']');
    if (close != absl::string_view::npos) return std::string(address.substr(1, close - 1));
  }
  const size_t colon = address.rfind(':');
  if (colon == absl::string_view::npos) return std::string(address);
  return std::string(address.substr(0, colon));
}

}  // namespace pdserve::kv_transfer
