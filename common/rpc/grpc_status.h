#pragma once
// The one place where absl::Status and grpc::Status meet. Service handlers return
// ToGrpcStatus(...) of their plain C++ logic's status; clients turn call results back with
// FromGrpcStatus.

#include "absl/status/status.h"
#include "grpcpp/support/status.h"

namespace pdserve::rpc {

grpc::Status ToGrpcStatus(const absl::Status& status);
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace pdserve::rpc
