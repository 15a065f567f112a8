#pragma once
// Where a prefilled sequence's KV goes: one stream per sequence to one decode worker. The
// scheduler (prefill_scheduler.h) talks to this interface only; grpc_kv_sink.h is the gRPC
// implementation (KvReceiver.PushKv) and tests substitute their own.

#include <chrono>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "kv_transfer.pb.h"

namespace pdserve::prefill {

class KvSink {
 public:
  virtual ~KvSink() = default;
  // Sends one chunk, blocking until the transport has taken it (not until the receiver has it),
  // so the caller computes the next chunk while this one travels. The caller may reuse `chunk`
  // once it returns. An error ends the stream: it is the receiver's status when it has one,
  // with a message naming the decode address.
  virtual absl::Status Send(const v1::KvChunk& chunk) = 0;
  // Ends the stream and waits for the receiver's verdict on the whole sequence. Idempotent.
  virtual absl::Status Finish() = 0;
  // Abandons the stream (the receiver frees what it got). Thread-safe: may be called while
  // another thread is inside Send or Finish, which then fail.
  virtual void Cancel() = 0;
};

class KvSinkFactory {
 public:
  virtual ~KvSinkFactory() = default;
  // A stream to the decode worker at `decode_address` that gives up at `deadline`. Never null;
  // connection errors surface from Send / Finish.
  virtual std::unique_ptr<KvSink> Open(const std::string& decode_address,
                                       std::chrono::system_clock::time_point deadline) = 0;
};

}  // namespace pdserve::prefill
