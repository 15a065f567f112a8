#pragma once
// KvReceiver.PushKv, the decode side of every handoff's control stream: a thin shell over a
// KvReceiveSession (common/kv_transfer/receive_session.h). The first chunk opens the session
// with the transfer token (no token or a wrong one: PERMISSION_DENIED, nothing touched); block
// chunks are received by copy ("grpc") or checked in place ("shm"); the last chunk completes the
// reservation. A stream that ends before its last chunk fails the reservation (ABORTED).
//
// On gRPC's callback API: each chunk is handled in OnReadDone (the session's work is CPU-only
// and short: checks, one block copy into the pool), no thread is held between chunks.

#include <string>
#include <vector>

#include "common/kv/kv_block_pool.h"
#include "common/kv_transfer/reservation_table.h"
#include "common/rpc/call_authorization.h"
#include "grpcpp/support/server_callback.h"
#include "kv_transfer.grpc.pb.h"

namespace pdserve::kv_transfer {

class KvReceiverService final : public v1::KvReceiver::CallbackService {
 public:
  // Both outlive the service; `pool` is the pool the table's reservations hold blocks of.
  // `accepted`: the transports this worker offers (grpc, shm, tcp); a hello naming another
  // fails its reservation with FAILED_PRECONDITION. Empty: every transport.
  KvReceiverService(KvReservationTable& table, kv::KvBlockPool& pool,
                    std::vector<std::string> accepted = {}, rpc::SecurityPolicy security = {})
      : table_(table), pool_(pool), accepted_(std::move(accepted)),
        security_(std::move(security)) {}

  // A check that must refuse the call before anything else happens fits as the first line:
  //   if (!ok) return RejectPushKv(status);
  grpc::ServerReadReactor<v1::KvChunk>* PushKv(grpc::CallbackServerContext* context,
                                               v1::PushKvResponse* response) override;

 private:
  KvReservationTable& table_;
  kv::KvBlockPool& pool_;
  const std::vector<std::string> accepted_;
  const rpc::SecurityPolicy security_;  // who may push: the cluster
};

// A PushKv reactor that ends the call with `status` and reads nothing.
grpc::ServerReadReactor<v1::KvChunk>* RejectPushKv(const grpc::Status& status);

}  // namespace pdserve::kv_transfer
