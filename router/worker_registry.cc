#include "router/worker_registry.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace pdserve::router {

v1::WorkerInfo WorkerSnapshot::ToProto() const {
  v1::WorkerInfo info;
  info.set_worker_id(worker_id);
  info.set_role(role);
  info.set_address(address);
  info.set_healthy(healthy);
  *info.mutable_load() = load;
  info.set_seconds_since_heartbeat(seconds_since_heartbeat);
  *info.mutable_kv_layout() = kv_layout;
  return info;
}

WorkerRegistry::WorkerRegistry(absl::Duration heartbeat_timeout, Clock clock)
    : heartbeat_timeout_(heartbeat_timeout), clock_(std::move(clock)) {}

absl::Status WorkerRegistry::Register(const WorkerRegistration& registration) {
  if (registration.worker_id.empty()) {
    return absl::InvalidArgumentError("RegisterWorker: worker_id is empty");
  }
  if (registration.address.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("RegisterWorker: worker '", registration.worker_id, "' has no address"));
  }
  if (registration.role != v1::WORKER_ROLE_PREFILL && registration.role != v1::WORKER_ROLE_DECODE) {
    return absl::InvalidArgumentError(absl::StrCat(
        "RegisterWorker: worker '", registration.worker_id, "' has role ",
        static_cast<int>(registration.role), "; expected PREFILL or DECODE"));
  }
  if (registration.role == v1::WORKER_ROLE_DECODE && registration.kv_layout.block_size() < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "RegisterWorker: decode worker '", registration.worker_id, "' has KV block size ",
        registration.kv_layout.block_size(), "; it must be >= 1"));
  }
  absl::MutexLock lock(&mu_);
  Entry& entry = workers_[registration.worker_id];
  entry.registration = registration;
  entry.last_heartbeat = clock_();
  entry.dispatched_since_heartbeat = 0;
  entry.blocks_dispatched_since_heartbeat = 0;
  return absl::OkStatus();
}

bool WorkerRegistry::Heartbeat(const std::string& worker_id, const v1::WorkerLoad& load) {
  absl::MutexLock lock(&mu_);
  auto it = workers_.find(worker_id);
  if (it == workers_.end()) return false;
  it->second.registration.load = load;
  it->second.last_heartbeat = clock_();
  it->second.dispatched_since_heartbeat = 0;
  it->second.blocks_dispatched_since_heartbeat = 0;
  return true;
}

void WorkerRegistry::NoteDispatched(const std::string& worker_id, int64_t kv_blocks) {
  absl::MutexLock lock(&mu_);
  auto it = workers_.find(worker_id);
  if (it == workers_.end()) return;
  ++it->second.dispatched_since_heartbeat;
  it->second.blocks_dispatched_since_heartbeat += kv_blocks;
}

std::vector<WorkerSnapshot> WorkerRegistry::Snapshot() const {
  const absl::Time now = clock_();
  absl::MutexLock lock(&mu_);
  std::vector<WorkerSnapshot> out;
  out.reserve(workers_.size());
  for (const auto& [id, entry] : workers_) {
    WorkerSnapshot s;
    s.worker_id = id;
    s.role = entry.registration.role;
    s.address = entry.registration.address;
    s.load = entry.registration.load;
    s.kv_layout = entry.registration.kv_layout;
    s.model_name = entry.registration.model_name;
    const absl::Duration age = now - entry.last_heartbeat;
    s.seconds_since_heartbeat = absl::ToDoubleSeconds(age);
    s.healthy = age <= heartbeat_timeout_;
    s.dispatched_since_heartbeat = entry.dispatched_since_heartbeat;
    s.blocks_dispatched_since_heartbeat = entry.blocks_dispatched_since_heartbeat;
    out.push_back(std::move(s));
  }
  return out;
}

}  // namespace pdserve::router
