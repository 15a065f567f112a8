#pragma once
// A server-streaming callback reactor that ends its call at once with a status: what a callback
// handler returns when it refuses the call before doing anything (e.g. AuthorizePublicCall
// failed).
//
//   if (absl::Status s = rpc::AuthorizePublicCall(*context, policy); !s.ok()) {
//     return new rpc::FinishedWriteReactor<grpc::ByteBuffer>(rpc::ToGrpcStatus(s));
//   }

#include "grpcpp/support/server_callback.h"
#include "grpcpp/support/status.h"

namespace pdserve::rpc {

template <typename Response>
class FinishedWriteReactor final : public grpc::ServerWriteReactor<Response> {
 public:
  // Heap-allocated; deletes itself when gRPC is done with the call.
  explicit FinishedWriteReactor(const grpc::Status& status) { this->Finish(status); }
  void OnDone() override { delete this; }
};

}  // namespace pdserve::rpc
