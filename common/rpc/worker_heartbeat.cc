#include "common/rpc/worker_heartbeat.h"

#include <algorithm>
#include <future>
#include <iostream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/rpc/channel_cache.h"
#include "common/rpc/grpc_status.h"

namespace pdserve::rpc {

WorkerHeartbeat::WorkerHeartbeat(WorkerHeartbeatOptions options, WorkerLoadFn load)
    : options_(std::move(options)),
      load_(std::move(load)),
      stub_(v1::WorkerRegistry::NewStub(NewClusterChannel(options_.router_address,
                                                                options_.router_channel))),
      interval_(options_.default_heartbeat_interval) {}

WorkerHeartbeat::~WorkerHeartbeat() { Stop(); }

absl::Status WorkerHeartbeat::Start() {
  std::unique_lock<std::mutex> lock(mutex_);
  if (started_ || stop_) {
    return absl::FailedPreconditionError("the heartbeat client was already started or stopped");
  }
  started_ = true;
  thread_ = std::thread([this] { Loop(); });
  const bool ok = cv_.wait_for(lock, options_.register_timeout, [this] {
    return registered_.load() || stop_ || !refusal_.ok();
  });
  if (!refusal_.ok()) return refusal_;
  if (ok && registered_.load()) return absl::OkStatus();
  return absl::DeadlineExceededError(absl::StrCat(
      "worker ", options_.worker_id, " could not register with the router at ",
      options_.router_address, " within ", options_.register_timeout.count(),
      " ms: ", last_error_.empty() ? "stopped" : last_error_));
}

void WorkerHeartbeat::Stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
    if (in_flight_ != nullptr) in_flight_->TryCancel();
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

absl::Status WorkerHeartbeat::Deregister() {
  Stop();
  v1::DeregisterWorkerRequest request;
  request.set_worker_id(options_.worker_id);
  request.set_address(options_.advertised_address);
  v1::DeregisterWorkerResponse response;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + options_.rpc_timeout);
  const grpc::Status status = stub_->Deregister(&context, request, &response);
  if (status.ok()) return absl::OkStatus();
  const absl::Status error = FromGrpcStatus(status);
  return absl::Status(error.code(), absl::StrCat("Deregister with the router at ",
                                                 options_.router_address, ": ", error.message()));
}

absl::Status WorkerHeartbeat::refusal() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return refusal_;
}

std::chrono::milliseconds WorkerHeartbeat::heartbeat_interval() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return interval_;
}

std::unique_ptr<grpc::ClientContext> WorkerHeartbeat::NewContext() {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(std::chrono::system_clock::now() + options_.rpc_timeout);
  std::lock_guard<std::mutex> lock(mutex_);
  if (stop_) return nullptr;
  in_flight_ = context.get();
  return context;
}

void WorkerHeartbeat::ForgetContext() {
  std::lock_guard<std::mutex> lock(mutex_);
  in_flight_ = nullptr;
}

bool WorkerHeartbeat::WaitOrStop(std::chrono::milliseconds d) {
  std::unique_lock<std::mutex> lock(mutex_);
  return cv_.wait_for(lock, d, [this] { return stop_; });
}

bool WorkerHeartbeat::TryRegister() {
  v1::RegisterWorkerRequest request;
  request.set_worker_id(options_.worker_id);
  request.set_role(options_.role);
  request.set_address(options_.advertised_address);
  if (load_) *request.mutable_load() = load_();
  *request.mutable_kv_layout() = options_.kv_layout;
  request.set_model_name(options_.model_name);
  v1::RegisterWorkerResponse response;
  std::unique_ptr<grpc::ClientContext> context = NewContext();
  if (context == nullptr) return false;
  const grpc::Status status = stub_->RegisterWorker(context.get(), request, &response);
  ForgetContext();
  std::lock_guard<std::mutex> lock(mutex_);
  if (status.error_code() == grpc::StatusCode::FAILED_PRECONDITION) {
    refusal_ = absl::FailedPreconditionError(absl::StrCat(
        "the router at ", options_.router_address, " refused this worker: ",
        status.error_message()));
    last_error_ = std::string(refusal_.message());
    cv_.notify_all();
    return false;
  }
  if (!status.ok()) {
    last_error_ = absl::StrCat("RegisterWorker: ", status.error_message(), " (code ",
                               static_cast<int>(status.error_code()), ")");
    return false;
  }
  interval_ = response.heartbeat_interval_ms() > 0
                  ? std::chrono::milliseconds(response.heartbeat_interval_ms())
                  : options_.default_heartbeat_interval;
  ++n_registrations_;
  registered_ = true;
  cv_.notify_all();
  return true;
}

bool WorkerHeartbeat::TryHeartbeat() {
  v1::HeartbeatRequest request;
  request.set_worker_id(options_.worker_id);
  if (load_) *request.mutable_load() = load_();
  v1::HeartbeatResponse response;
  std::unique_ptr<grpc::ClientContext> context = NewContext();
  if (context == nullptr) return false;
  const grpc::Status status = stub_->Heartbeat(context.get(), request, &response);
  ForgetContext();
  if (!status.ok()) {
    std::lock_guard<std::mutex> lock(mutex_);
    last_error_ = absl::StrCat("Heartbeat: ", status.error_message(), " (code ",
                               static_cast<int>(status.error_code()), ")");
    return false;
  }
  ++n_heartbeats_;
  if (!response.registered()) registered_ = false;
  return true;
}

void WorkerHeartbeat::Loop() {
  while (true) {
    if (!registered_.load()) {
      if (TryRegister()) continue;
      if (!refusal().ok()) return;  // final: see the header
      if (WaitOrStop(options_.register_retry)) return;
      continue;
    }
    if (WaitOrStop(heartbeat_interval())) return;
    if (!TryHeartbeat()) {
      // The router did not answer: it may have restarted with an empty table, so register
      // again (every register_retry) until it answers.
      registered_ = false;
    }
  }
}

absl::StatusOr<int> WaitForShutdownWhileRegistering(const ShutdownSignals& signals,
                                                    WorkerHeartbeat* heartbeat,
                                                    const std::string& program) {
  std::future<absl::Status> registration;
  if (heartbeat != nullptr) {
    registration = std::async(std::launch::async, [heartbeat] { return heartbeat->Start(); });
  }
  int64_t registrations_logged = 0;
  absl::Status refusal;
  const int signal_number = signals.Wait([&] {
    if (heartbeat == nullptr) return false;
    const WorkerHeartbeatOptions& options = heartbeat->options();
    // Accepted registrations since the last poll: the first, a late one, one after a router
    // restart (numbered from the second on).
    if (const int64_t n = heartbeat->n_registrations(); n > registrations_logged) {
      registrations_logged = n;
      std::cerr << "registered with the router at " << options.router_address << " as "
                << options.worker_id << " (" << options.advertised_address << ")";
      if (n > 1) std::cerr << ", registration " << n;
      std::cerr << std::endl;
    }
    if (refusal = heartbeat->refusal(); !refusal.ok()) return true;  // ends the wait
    if (registration.valid() &&
        registration.wait_for(std::chrono::seconds(0)) == std::future_status::ready) {
      if (absl::Status s = registration.get(); !s.ok() && heartbeat->refusal().ok()) {
        std::cerr << program << ": " << s.message() << " (still trying in the background)"
                  << std::endl;
      }
    }
    return false;
  });
  if (heartbeat != nullptr) heartbeat->Stop();  // also ends a registration still in progress
  if (registration.valid()) registration.wait();
  if (!refusal.ok()) return refusal;
  return signal_number;
}

}  // namespace pdserve::rpc
