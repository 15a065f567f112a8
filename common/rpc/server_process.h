#pragma once
// What every pdserve server binary (router, prefill worker, decode worker) does around its
// services: SIGINT/SIGTERM are taken by the main thread alone; the server listens with gRPC
// health checking and reflection; on a signal it reports NOT_SERVING, lets in-flight calls
// drain (a worker first waits for its work in flight: WaitUntilDrained), then cancels what is
// left.

#include <signal.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server.h"

namespace pdserve::rpc {

struct HostPort {
  std::string host;
  int port = 0;
  std::string ToString() const;
};

// "HOST:PORT", split at the last ':' so that "[::]:0" works; the port is in [0, 65535].
// InvalidArgument naming the text otherwise.
absl::StatusOr<HostPort> ParseHostPort(const std::string& address);

// True for the hosts that mean "every interface" (0.0.0.0, ::, [::]): a listen address, never
// one to give to others.
bool IsWildcardHost(const std::string& host);

// Blocks SIGINT and SIGTERM in the calling thread on construction. Threads started afterwards
// inherit the mask, so only Wait receives them: construct first thing in main, before anything
// starts a thread (gRPC included).
class ShutdownSignals {
 public:
  ShutdownSignals();
  // Returns the number of the first SIGINT/SIGTERM, or 0 once `poll` returns true. `poll`, when
  // given, runs about every 100 ms while waiting (on this thread).
  int Wait(const std::function<bool()>& poll = nullptr) const;

 private:
  sigset_t signals_;
};

struct ServerOptions {
  std::string listen = "127.0.0.1:0";  // HOST:PORT; port 0 picks a free one
  int max_receive_message_bytes = 0;   // 0: gRPC's default (4 MiB)
  // How callers must connect (ClusterSecurity::ServerCredentials); null: plaintext.
  std::shared_ptr<grpc::ServerCredentials> credentials;
};

class ServingServer {
 public:
  // Serves `services` (not owned: they must outlive the server) on options.listen, with the
  // standard health service reporting SERVING and server reflection. InvalidArgument for a bad
  // listen address, Unavailable when it cannot bind (a port in use included: no SO_REUSEPORT).
  static absl::StatusOr<std::unique_ptr<ServingServer>> Start(
      const ServerOptions& options, const std::vector<grpc::Service*>& services);
  ~ServingServer();  // Shutdown(0) when not yet shut down, then Wait()

  // The listen host with the port actually bound.
  const HostPort& bound() const { return bound_; }
  // bound(), with a wildcard host replaced by 127.0.0.1: an address this machine can call.
  std::string LocalAddress() const;

  // Health turns NOT_SERVING while calls are still taken: load balancers and Kubernetes'
  // readiness probe stop sending, work in flight (and the calls that complete it) goes on.
  void ReportNotServing();
  // Health turns NOT_SERVING and no new call is taken; calls in flight get `drain` to finish,
  // then are cancelled (a handler blocked elsewhere must notice that itself: stop what it waits
  // on between Shutdown and Wait). Idempotent.
  void Shutdown(std::chrono::milliseconds drain);
  // Returns once every handler has returned. Shutdown first.
  void Wait();

 private:
  ServingServer(std::unique_ptr<grpc::Server> server, HostPort bound)
      : server_(std::move(server)), bound_(std::move(bound)) {}

  std::unique_ptr<grpc::Server> server_;
  HostPort bound_;
  bool shut_down_ = false;
};

// How WaitUntilDrained ended.
enum class DrainEnd {
  kIdle,         // no work left in flight
  kTimedOut,     // the timeout passed with work still in flight
  kInterrupted,  // another SIGINT/SIGTERM arrived: stop at once
};
const char* DrainEndName(DrainEnd end);

// Waits on the calling thread (the one that took the first signal) until `in_flight` returns 0
// (checked at once, then about every 100 ms), `timeout` passes or another signal arrives.
DrainEnd WaitUntilDrained(const ShutdownSignals& signals,
                          const std::function<int64_t()>& in_flight, absl::Duration timeout);

}  // namespace pdserve::rpc
