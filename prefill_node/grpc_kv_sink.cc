#include "prefill_node/grpc_kv_sink.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/rpc/grpc_status.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"
#include "grpcpp/support/sync_stream.h"
#include "kv_transfer.grpc.pb.h"

namespace pdserve::prefill {
namespace {

class GrpcKvSink final : public KvSink {
 public:
  GrpcKvSink(std::shared_ptr<grpc::Channel> channel, std::string address,
             std::chrono::system_clock::time_point deadline)
      : address_(std::move(address)), stub_(v1::KvReceiver::NewStub(std::move(channel))) {
    context_.set_deadline(deadline);
    writer_ = stub_->PushKv(&context_, &response_);
  }

  ~GrpcKvSink() override {
    // A stream that was neither finished nor failed is abandoned: the receiver frees its blocks.
    if (!finished_) {
      context_.TryCancel();
      (void)writer_->Finish();
    }
  }

  absl::Status Send(const v1::KvChunk& chunk) override {
    if (finished_) return status_;
    if (writer_->Write(chunk)) {
      n_blocks_sent_ += chunk.blocks_size();
      return absl::OkStatus();
    }
    // The stream broke: the reason is in the call's final status.
    return FinishCall(/*writes_done=*/false);
  }

  absl::Status Finish() override {
    if (finished_) return status_;
    return FinishCall(/*writes_done=*/true);
  }

  void Cancel() override { context_.TryCancel(); }

 private:
  absl::Status FinishCall(bool writes_done) {
    if (writes_done) writer_->WritesDone();
    const grpc::Status status = writer_->Finish();
    finished_ = true;
    if (status.ok()) {
      // OK before we finished writing: the receiver stopped reading part-way.
      if (!writes_done) {
        status_ = absl::InternalError(absl::StrCat(
            "decode worker at ", address_, " ended the KV stream before its last chunk"));
      } else if (response_.blocks_received() != n_blocks_sent_) {
        status_ = absl::DataLossError(absl::StrCat(
            "decode worker at ", address_, " acknowledged ", response_.blocks_received(),
            " KV blocks of the ", n_blocks_sent_, " sent"));
      } else {
        status_ = absl::OkStatus();
      }
    } else if (status.error_code() == grpc::StatusCode::UNAVAILABLE) {
      status_ = absl::UnavailableError(absl::StrCat("decode worker at ", address_,
                                                    " is unavailable: ", status.error_message()));
    } else {
      status_ = absl::Status(rpc::FromGrpcStatus(status).code(),
                             absl::StrCat("decode worker at ", address_, " refused the KV: ",
                                          status.error_message()));
    }
    return status_;
  }

  const std::string address_;
  std::unique_ptr<v1::KvReceiver::Stub> stub_;
  grpc::ClientContext context_;
  v1::PushKvResponse response_;
  std::unique_ptr<grpc::ClientWriter<v1::KvChunk>> writer_;
  bool finished_ = false;
  absl::Status status_;
  int n_blocks_sent_ = 0;  // in chunks the transport took
};

}  // namespace

std::shared_ptr<grpc::Channel> GrpcKvSinkFactory::ChannelFor(const std::string& address) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = channels_.find(address);
  if (it != channels_.end()) return it->second;
  grpc::ChannelArguments args;
  // A restarted decode worker must be reachable again within a second, not after gRPC's
  // default backoff of up to two minutes.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  args.SetMaxSendMessageSize(-1);
  std::shared_ptr<grpc::Channel> channel =
      grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
  channels_.emplace(address, channel);
  return channel;
}

std::unique_ptr<KvSink> GrpcKvSinkFactory::Open(const std::string& decode_address,
                                                std::chrono::system_clock::time_point deadline) {
  return std::make_unique<GrpcKvSink>(ChannelFor(decode_address), decode_address, deadline);
}

}  // namespace pdserve::prefill
