#include "common/rpc/server_process.h"

#include <pthread.h>

#include <cerrno>
#include <ctime>
#include <utility>

#include "absl/strings/str_cat.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server_builder.h"

namespace pdserve::rpc {

std::string HostPort::ToString() const { return absl::StrCat(host, ":", port); }

absl::StatusOr<HostPort> ParseHostPort(const std::string& address) {
  const absl::Status bad = absl::InvalidArgumentError(
      absl::StrCat("'", address, "' is not HOST:PORT with a port in [0, 65535]"));
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == address.size()) return bad;
  const std::string digits = address.substr(colon + 1);
  if (digits.size() > 5 || digits.find_first_not_of("0123456789") != std::string::npos) {
    return bad;
  }
  const int port = std::stoi(digits);
  if (port > 65535) return bad;
  return HostPort{address.substr(0, colon), port};
}

bool IsWildcardHost(const std::string& host) {
  return host == "0.0.0.0" || host == "::" || host == "[::]";
}

ShutdownSignals::ShutdownSignals() {
  sigemptyset(&signals_);
  sigaddset(&signals_, SIGINT);
  sigaddset(&signals_, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals_, nullptr);
}

int ShutdownSignals::Wait(const std::function<bool()>& poll) const {
  while (true) {
    const timespec period{0, 100 * 1000 * 1000};
    const int received = sigtimedwait(&signals_, nullptr, &period);
    if (received > 0) return received;
    if (poll && poll()) return 0;  // EAGAIN (the period passed) or EINTR
  }
}

absl::StatusOr<std::unique_ptr<ServingServer>> ServingServer::Start(
    const ServerOptions& options, const std::vector<grpc::Service*>& services) {
  absl::StatusOr<HostPort> listen = ParseHostPort(options.listen);
  if (!listen.ok()) return listen.status();
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int bound_port = 0;
  builder.AddListeningPort(options.listen,
                           options.credentials != nullptr ? options.credentials
                                                          : grpc::InsecureServerCredentials(),
                           &bound_port);
  // gRPC sets SO_REUSEPORT by default on Linux: a second server on a taken port would start and
  // silently share its calls. A port in use must be an error instead.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  if (options.max_receive_message_bytes > 0) {
    builder.SetMaxReceiveMessageSize(options.max_receive_message_bytes);
  }
  for (grpc::Service* service : services) builder.RegisterService(service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || bound_port == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", options.listen));
  }
  server->GetHealthCheckService()->SetServingStatus(true);
  return std::unique_ptr<ServingServer>(
      new ServingServer(std::move(server), HostPort{listen->host, bound_port}));
}

ServingServer::~ServingServer() {
  Shutdown(std::chrono::milliseconds(0));
  Wait();
}

std::string ServingServer::LocalAddress() const {
  return IsWildcardHost(bound_.host) ? absl::StrCat("127.0.0.1:", bound_.port)
                                     : bound_.ToString();
}

void ServingServer::ReportNotServing() {
  if (!shut_down_) server_->GetHealthCheckService()->SetServingStatus(false);
}

void ServingServer::Shutdown(std::chrono::milliseconds drain) {
  if (shut_down_) return;
  shut_down_ = true;
  server_->GetHealthCheckService()->SetServingStatus(false);
  server_->Shutdown(std::chrono::system_clock::now() + drain);
}

void ServingServer::Wait() { server_->Wait(); }

const char* DrainEndName(DrainEnd end) {
  switch (end) {
    case DrainEnd::kIdle:
      return "idle";
    case DrainEnd::kTimedOut:
      return "timed out";
    case DrainEnd::kInterrupted:
      return "interrupted";
  }
  return "?";
}

DrainEnd WaitUntilDrained(const ShutdownSignals& signals,
                          const std::function<int64_t()>& in_flight, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  if (in_flight() == 0) return DrainEnd::kIdle;
  if (timeout <= absl::ZeroDuration()) return DrainEnd::kTimedOut;
  DrainEnd end = DrainEnd::kIdle;
  const int signal_number = signals.Wait([&] {
    if (in_flight() == 0) return true;
    if (absl::Now() < deadline) return false;
    end = DrainEnd::kTimedOut;
    return true;
  });
  return signal_number != 0 ? DrainEnd::kInterrupted : end;
}

}  // namespace pdserve::rpc
