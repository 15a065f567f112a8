#pragma once
// The pieces both KV transfer benchmarks share: the decode worker's receiving end in this
// process (the KvReceiver control-stream service on an ephemeral gRPC port, a TcpKvReceiver,
// and the offers a decode worker makes), the prefill worker's sending end (every transport,
// one forced per handoff), patterned bytes, and percentiles. Everything runs over 127.0.0.1 and
// one process, as tests/common/kv_transfer/kv_transport_test.cc does.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "common/kv/kv_block_pool.h"
#include "common/kv_transfer/grpc/control_stream.h"
#include "common/kv_transfer/grpc/kv_receiver_service.h"
#include "common/kv_transfer/handoff.h"
#include "common/kv_transfer/handoff_sender.h"
#include "common/kv_transfer/reservation_table.h"
#include "common/kv_transfer/send_transports.h"
#include "common/kv_transfer/tcp/tcp_kv_receiver.h"
#include "grpcpp/server.h"

namespace pdserve::bench {

// SmolLM2-135M's KV layout (docs/kv-layout.md: 46,080 bytes a token in f32).
kv::KvLayout SmolLm2KvLayout(kernels::KvDtype dtype);

// The decode side's receivers over `table` and `pool` (both outlive the rig). `shm_name` is the
// shared-memory object holding the pool's bytes, or empty when it is not in shared memory (no
// shm offer then).
class ReceiverRig {
 public:
  static absl::StatusOr<std::unique_ptr<ReceiverRig>> Start(kv_transfer::KvReservationTable& table,
                                                           kv::KvBlockPool& pool,
                                                           std::string shm_name);
  ~ReceiverRig();  // stops the TCP receiver, then the gRPC server
  ReceiverRig(const ReceiverRig&) = delete;
  ReceiverRig& operator=(const ReceiverRig&) = delete;

  const std::string& address() const { return address_; }  // "127.0.0.1:port" of the service
  // shm (when in shared memory), tcp, grpc: what a decode worker offers.
  const std::vector<kv_transfer::TransportOffer>& offers() const { return offers_; }

 private:
  ReceiverRig(kv_transfer::KvReservationTable& table, kv::KvBlockPool& pool);

  kv_transfer::KvReceiverService service_;
  std::unique_ptr<grpc::Server> server_;
  kv_transfer::TcpKvReceiver tcp_;
  std::string address_;
  std::vector<kv_transfer::TransportOffer> offers_;
};

// What one handoff cost, on the sender's clock.
struct SendTiming {
  double open_seconds = 0;  // Open: connections and the hello
  double seconds = 0;       // the first SendBlocks call → Finish returned decode's OK
  int64_t bytes = 0;        // block bytes handed over (whole blocks)
};

// The prefill side: one KvSendTransports per transport name, each forced to that transport.
class SenderRig {
 public:
  SenderRig();

  // Hands blocks `table.blocks` (the whole prompt's, in `pool`) to the reservation `handoff`
  // names over `transport` ("grpc" | "shm" | "tcp"), `chunk_blocks` blocks per SendBlocks as the
  // prefill worker sends them, then Finish with `first_token`. OK only when decode acknowledged
  // the whole sequence (every block verified and committed, the reservation completed).
  absl::StatusOr<SendTiming> Send(const std::string& transport, const kv::KvBlockPool& pool,
                                  const kv::BlockTable& table, const kv_transfer::Handoff& handoff,
                                  absl::Span<const int32_t> prompt, int chunk_blocks,
                                  int32_t first_token);

 private:
  rpc::ChannelCache channels_;
  std::vector<std::pair<std::string, std::unique_ptr<kv_transfer::KvSendTransports>>> by_name_;
};

// Fills `bytes` with a pseudo-random pattern fixed by `seed` (splitmix64 words).
void FillPattern(absl::Span<uint8_t> bytes, uint64_t seed);

// Nearest-rank percentile (q in [0, 1]) and mean. Precondition: !values.empty().
double Percentile(std::vector<double> values, double q);
double Mean(absl::Span<const double> values);

// "grpc,shm" → {"grpc", "shm"}; InvalidArgument naming `flag` for a name that is not one of
// grpc, shm, tcp, or a repeat.
absl::StatusOr<std::vector<std::string>> ParseTransportList(const std::string& flag,
                                                            const std::string& text);

}  // namespace pdserve::bench
