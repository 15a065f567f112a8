#pragma once
// The handshake of a KV handoff (docs/kv-transfer.md), as plain structs: what the decode worker
// answers a reservation with (the router copies it to the prefill worker unchanged) and how the
// prefill worker picks a transport from it. Wire form: KvHandoff in proto/worker.proto
// (common/kv_transfer/grpc/handoff_proto.h converts).

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/kv/kv_block_pool.h"
#include "common/kv/kv_layout.h"

namespace pdserve::kv_transfer {

// Transport names, as in the config (`kv_transport=`) and on the wire.
inline constexpr absl::string_view kGrpcTransport = "grpc";
inline constexpr absl::string_view kShmTransport = "shm";
inline constexpr absl::string_view kTcpTransport = "tcp";

// Whether `name` is one of the transports above.
bool IsTransportName(absl::string_view name);

// Which transports a worker may use: "auto" (every one it can), or exactly one.
enum class TransportMode { kAuto, kGrpc, kShm, kTcp };
absl::StatusOr<TransportMode> ParseTransportMode(absl::string_view name);
std::string TransportModeName(TransportMode mode);
// Whether `mode` allows `transport`.
bool ModeAllows(TransportMode mode, absl::string_view transport);

struct TransportOffer {
  std::string transport;  // kShmTransport | kTcpTransport | kGrpcTransport
  // tcp: "host:port" or ":port" (the host of the control address); shm: the shared-memory
  // object's name; grpc: empty (the control stream).
  std::string endpoint;
  std::string host_id;    // shm: the decode host's boot id
};

// Everything the sender needs to hand one sequence's KV to the decode worker.
struct Handoff {
  std::string request_id;
  std::string control_address;          // host:port of the decode worker's KvReceiver
  std::string transfer_token;           // kTransferTokenBytes bytes
  std::vector<kv::BlockId> target_blocks;  // decode pool blocks, one per prompt block
  kv::KvLayout layout;                  // the decode pool's layout
  std::string model_fingerprint;        // the decode worker's model; empty when unknown
  std::vector<TransportOffer> offers;   // decode's preference order
  absl::Duration lease_idle = absl::ZeroDuration();  // zero: unknown
  absl::Duration lease_max = absl::ZeroDuration();
  // The reservation's hard deadline on the decode host's clock (InfiniteFuture: unknown). Only a
  // same-host sender may compare it with its own clock.
  absl::Time lease_expiry = absl::InfiniteFuture();
};

// OK when a peer's KV layout equals ours and its model fingerprint equals ours (an empty
// fingerprint on either side is not compared); otherwise FailedPrecondition naming both sides:
// "layout mismatch: <peer> has …, this worker has …" or "model mismatch: <peer> runs model …,
// this worker runs …". Both ends of a handoff check it, each naming the other.
absl::Status CheckSameModelAndLayout(absl::string_view peer, const kv::KvLayout& their_layout,
                                     absl::string_view their_fingerprint,
                                     const kv::KvLayout& our_layout,
                                     absl::string_view our_fingerprint);

// Checks a handoff against the sender's own pool and prompt before any compute: the token's
// size, one target block per prompt block, and CheckSameModelAndLayout. InvalidArgument for a
// malformed handoff, FailedPrecondition naming both sides for a mismatch.
absl::Status CheckHandoff(const Handoff& handoff, const kv::KvLayout& our_layout,
                          absl::string_view our_fingerprint, int64_t n_prompt_tokens);

// The host part of "host:port" ("[v6]:port" gives "v6"); the whole string when it has no port.
std::string HostOf(absl::string_view address);

}  // namespace pdserve::kv_transfer
