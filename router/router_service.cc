#include "router/router_service.h"

#include <chrono>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/rpc/finished_reactor.h"
#include "common/rpc/grpc_status.h"
#include "common/rpc/proto_convert.h"
#include "router/request_validation.h"

namespace pdserve::router {
namespace {

// Who the client is, for the relay's fair queue: its API key (already checked) when it sent one,
// else its connection.
std::string ClientKey(const grpc::CallbackServerContext& context) {
  const auto& metadata = context.client_metadata();
  if (auto it = metadata.find("authorization"); it != metadata.end()) {
    return absl::StrCat("key ", absl::string_view(it->second.data(), it->second.size()));
  }
  return absl::StrCat("peer ", context.peer());
}

std::string BufferBytes(const grpc::ByteBuffer& buffer) {
  std::string bytes;
  std::vector<grpc::Slice> slices;
  if (buffer.Dump(&slices).ok()) {
    for (const grpc::Slice& slice : slices) {
      bytes.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
    }
  }
  return bytes;
}

}  // namespace

// One Generate call: the relay's ResponseSink on a gRPC server stream. Deletes itself in OnDone;
// holds the relay call until then, the relay holds it until it has called Finish.
class RouterService::GenerateReactor final : public grpc::ServerWriteReactor<grpc::ByteBuffer>,
                                             public ResponseSink {
 public:
  GenerateReactor(Relay& relay, grpc::CallbackServerContext& context,
                  const grpc::ByteBuffer& request)
      : context_(context) {
    call_ = relay.Start(ParseGenerateRequest(BufferBytes(request)), *this, rpc::CallDeadline(context),
                        ClientKey(context));
  }

  // ResponseSink.
  void StartWrite(const v1::GenerateResponse& response) override {
    std::string bytes = response.SerializeAsString();
    grpc::Slice slice(bytes);
    buffer_ = grpc::ByteBuffer(&slice, 1);
    ServerWriteReactor::StartWrite(&buffer_);
  }
  void CancelStream() override { context_.TryCancel(); }
  void Finish(const absl::Status& status, absl::Duration retry_after) override {
    if (retry_after > absl::ZeroDuration()) {
      context_.AddTrailingMetadata("retry-after-ms",
                                   std::to_string(absl::ToInt64Milliseconds(retry_after)));
    }
    ServerWriteReactor::Finish(rpc::ToGrpcStatus(status));
  }

  // gRPC.
  void OnWriteDone(bool ok) override { call_->OnWriteDone(ok); }
  void OnCancel() override { call_->OnClientCancelled(); }
  void OnDone() override { delete this; }

 private:
  grpc::CallbackServerContext& context_;
  grpc::ByteBuffer buffer_;  // the message being written (one at a time)
  std::shared_ptr<RelayCall> call_;
};

grpc::ServerWriteReactor<grpc::ByteBuffer>* RouterService::Generate(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* request) {
  if (absl::Status s = rpc::AuthorizePublicCall(*context, security_); !s.ok()) {
    return new rpc::FinishedWriteReactor<grpc::ByteBuffer>(rpc::ToGrpcStatus(s));
  }
  return new GenerateReactor(relay_, *context, *request);
}

grpc::Status RouterService::GetStats(grpc::ServerContext* context,
                                     const v1::GetStatsRequest* request,
                                     v1::GetStatsResponse* response) {
  if (absl::Status s = rpc::AuthorizePublicCall(*context, security_); !s.ok()) {
    return rpc::ToGrpcStatus(s);
  }
  *response = stats_.Get(registry_.Snapshot());
  response->mutable_cluster()->set_queued(relay_.queued());
  return grpc::Status::OK;
}

grpc::Status RouterService::ListWorkers(grpc::ServerContext* context,
                                        const v1::ListWorkersRequest* request,
                                        v1::ListWorkersResponse* response) {
  if (absl::Status s = rpc::AuthorizePublicCall(*context, security_); !s.ok()) {
    return rpc::ToGrpcStatus(s);
  }
  for (const WorkerSnapshot& worker : registry_.Snapshot()) {
    *response->add_workers() = worker.ToProto();
  }
  return grpc::Status::OK;
}

}  // namespace pdserve::router
