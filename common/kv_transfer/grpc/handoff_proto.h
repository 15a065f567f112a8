#pragma once
// Wire forms of the transfer layer's handshake (proto/worker.proto KvHandoff, the first
// KvChunk of proto/kv_transfer.proto, KvTransferReport): the one place they are converted.

#include "absl/status/statusor.h"
#include "common/kv_transfer/handoff.h"
#include "common/kv_transfer/handoff_sender.h"
#include "common/kv_transfer/kv_send_stream.h"
#include "kv_transfer.pb.h"
#include "worker.pb.h"

namespace pdserve::kv_transfer {

v1::KvHandoff HandoffToProto(const Handoff& handoff);
// InvalidArgument naming the field for a layout that is not one of this version. The request id
// and control address are not in the message: the caller sets them.
absl::StatusOr<Handoff> HandoffFromProto(const v1::KvHandoff& proto);

// The hello fields of a control stream's first chunk.
void SetHello(const SenderHello& hello, v1::KvChunk& first_chunk);
// InvalidArgument naming what is missing (request id, token, layout).
absl::StatusOr<SenderHello> HelloFromChunk(const v1::KvChunk& first_chunk);

v1::KvTransferReport TransferReportToProto(const TransferReport& report);

}  // namespace pdserve::kv_transfer
