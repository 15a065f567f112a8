#pragma once
// Conversions between wire messages (proto/) and the engine's plain structs.

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common.pb.h"
#include "common/kv/kv_layout.h"
#include "common/request/request_contract.h"
#include "common/sampling/sampler.h"
#include "grpcpp/server_context.h"

namespace pdserve::rpc {

// Absent fields take the SamplingParams defaults. Not validated: see ValidateSamplingParams.
sampling::SamplingParams SamplingFromProto(const v1::SamplingOptions& options);
v1::SamplingOptions SamplingToProto(const sampling::SamplingParams& params);

// A served call's deadline; InfiniteFuture when the client set none (gRPC then reports a
// far-future time point).
absl::Time CallDeadline(const grpc::ServerContextBase& context);

// The load a worker reports with each heartbeat.
v1::WorkerLoad WorkerLoadToProto(const request::WorkerLoad& load);

v1::KvLayoutInfo KvLayoutToProto(const kv::KvLayout& layout);
// InvalidArgument naming the field when the message is not a valid layout of this version.
absl::StatusOr<kv::KvLayout> KvLayoutFromProto(const v1::KvLayoutInfo& info);

}  // namespace pdserve::rpc
