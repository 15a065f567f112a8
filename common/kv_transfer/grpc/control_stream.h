#pragma once
// The client side of a handoff's control stream (KvReceiver.PushKv), which every transport keeps
// open for the whole handoff: the first chunk says hello (token, transport, layout, prompt
// size), the last carries the first token, and the call's response is decode's acknowledgement.

#include <map>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/kv_transfer/kv_send_stream.h"
#include "common/rpc/channel_cache.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"
#include "grpcpp/support/sync_stream.h"
#include "kv_transfer.grpc.pb.h"

namespace pdserve::kv_transfer {

class KvControlStream {
 public:
  // Starts the call; `hello` goes with the first Send (or with Finish when nothing is sent).
  KvControlStream(std::shared_ptr<grpc::Channel> channel, std::string address, SenderHello hello,
                  absl::Time deadline);
  ~KvControlStream();  // an unfinished stream is cancelled (decode fails the reservation)
  KvControlStream(const KvControlStream&) = delete;
  KvControlStream& operator=(const KvControlStream&) = delete;

  // Sends one chunk (the first gets the hello fields). Blocks until gRPC has taken it. An error
  // ends the stream: decode's status when it has one, naming the decode address.
  absl::Status Send(v1::KvChunk& chunk);
  // Sends the last chunk with `first_token` and waits for decode's verdict. Idempotent.
  absl::Status Finish(int32_t first_token);
  // Thread-safe: breaks a blocked Send or Finish.
  void Cancel() { context_.TryCancel(); }

  const std::string& address() const { return address_; }

 private:
  absl::Status FinishCall(bool writes_done);

  const std::string address_;
  const SenderHello hello_;
  std::unique_ptr<v1::KvReceiver::Stub> stub_;
  grpc::ClientContext context_;
  v1::PushKvResponse response_;
  std::unique_ptr<grpc::ClientWriter<v1::KvChunk>> writer_;
  bool hello_sent_ = false;
  bool finished_ = false;
  absl::Status status_;
  int64_t n_blocks_sent_ = 0;  // in chunks gRPC took
};

}  // namespace pdserve::kv_transfer
