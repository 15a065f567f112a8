#include "common/kv_transfer/grpc/control_stream.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/kv_transfer/grpc/handoff_proto.h"
#include "common/rpc/grpc_status.h"

namespace pdserve::kv_transfer {

KvControlStream::KvControlStream(std::shared_ptr<grpc::Channel> channel, std::string address,
                                 SenderHello hello, absl::Time deadline)
    : address_(std::move(address)),
      hello_(std::move(hello)),
      stub_(v1::KvReceiver::NewStub(std::move(channel))) {
  if (deadline != absl::InfiniteFuture()) context_.set_deadline(absl::ToChronoTime(deadline));
  writer_ = stub_->PushKv(&context_, &response_);
}

KvControlStream::~KvControlStream() {
  if (!finished_) {
    context_.TryCancel();
    (void)writer_->Finish();
  }
}

absl::Status KvControlStream::Send(v1::KvChunk& chunk) {
  if (finished_) return status_;
  if (!hello_sent_) SetHello(hello_, chunk);
  if (writer_->Write(chunk)) {
    hello_sent_ = true;
    n_blocks_sent_ += chunk.blocks_size();
    return absl::OkStatus();
  }
  // The stream broke: the reason is in the call's final status.
  return FinishCall(/*writes_done=*/false);
}

absl::Status KvControlStream::Finish(int32_t first_token) {
  if (finished_) return status_;
  v1::KvChunk last;
  last.set_last(true);
  last.set_first_token(first_token);
  if (absl::Status s = Send(last); !s.ok()) return s;
  return FinishCall(/*writes_done=*/true);
}

absl::Status KvControlStream::FinishCall(bool writes_done) {
  if (writes_done) writer_->WritesDone();
  const grpc::Status status = writer_->Finish();
  finished_ = true;
  if (status.ok()) {
    if (!writes_done) {
      // OK before we finished writing: the receiver stopped reading part-way.
      status_ = absl::InternalError(absl::StrCat(
          "decode worker at ", address_, " ended the KV stream before its last chunk"));
    } else if (hello_.transport == kGrpcTransport &&
               response_.blocks_received() != n_blocks_sent_) {
      status_ = absl::DataLossError(absl::StrCat("decode worker at ", address_, " acknowledged ",
                                                 response_.blocks_received(), " KV blocks of the ",
                                                 n_blocks_sent_, " sent"));
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

}  // namespace pdserve::kv_transfer
