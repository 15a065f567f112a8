#pragma once
// grpc.health.v1.Health/Check by hand, for tests of the servers' health reports: Debian's gRPC
// ships no generated health stubs for C++.

#include <chrono>
#include <future>
#include <string>
#include <vector>

#include "grpcpp/create_channel.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/byte_buffer.h"

namespace pdserve::test_support {

// Checks the whole server (empty service name) at `address`, over plaintext. Returns the call's
// status and sets *bytes to the answer: its field 1 is the status, so "\x08\x01" is SERVING and
// "\x08\x02" NOT_SERVING.
inline grpc::Status CheckHealth(const std::string& address, std::string* bytes) {
  auto channel = grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
  grpc::GenericStub stub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  grpc::Slice empty;
  grpc::ByteBuffer request(&empty, 1);
  grpc::ByteBuffer response;
  std::promise<grpc::Status> done;
  stub.UnaryCall(&context, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request,
                 &response, [&done](grpc::Status s) { done.set_value(s); });
  grpc::Status status = done.get_future().get();
  bytes->clear();
  std::vector<grpc::Slice> slices;
  if (status.ok() && response.Dump(&slices).ok()) {
    for (const grpc::Slice& s : slices) {
      bytes->append(reinterpret_cast<const char*>(s.begin()), s.size());
    }
  }
  return status;
}

}  // namespace pdserve::test_support
