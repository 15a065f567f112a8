#include "router/worker_registry.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace pdserve::router {
namespace {

// In kv::KvLayout::DebugString's format, for a layout that may have unset fields (fake workers
// send no dtype, which kv::KvLayout cannot hold).
std::string LayoutString(const v1::KvLayoutInfo& layout) {
  return absl::StrCat("layers=", layout.n_layers(), " kv_heads=", layout.n_kv_heads(),
                      " head_dim=", layout.head_dim(), " block_size=", layout.block_size(),
                      " dtype=", layout.dtype().empty() ? "?" : layout.dtype());
}

// A worker's model file name for messages; "?" when it sent none.
std::string FileOrUnknown(const std::string& name) { return name.empty() ? "?" : name; }

}  // namespace

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

WorkerRegistry::WorkerRegistry(absl::Duration heartbeat_timeout, Clock clock,
                               ModelIdentity model)
    : heartbeat_timeout_(heartbeat_timeout), clock_(std::move(clock)), model_(std::move(model)) {}

absl::Status WorkerRegistry::CheckCompatible(const WorkerRegistration& registration,
                                             absl::Time now) const {
  const v1::KvLayoutInfo& layout = registration.kv_layout;
  const std::string& id = registration.worker_id;
  // An empty fingerprint is accepted: fake workers in tests and older workers send none.
  if (!layout.model_fingerprint().empty() && !model_.fingerprint.empty() &&
      layout.model_fingerprint() != model_.fingerprint) {
    return absl::FailedPreconditionError(absl::StrCat(
        "worker ", id, " runs model fingerprint ", layout.model_fingerprint(), " (",
        FileOrUnknown(registration.model_name), ") but the router's model is ",
        model_.fingerprint, " (", model_.file_name, ")"));
  }
  const auto differs = [](int worker, int model) {
    return worker > 0 && model > 0 && worker != model;
  };
  if (differs(layout.n_layers(), model_.n_layers) ||
      differs(layout.n_kv_heads(), model_.n_kv_heads) ||
      differs(layout.head_dim(), model_.head_dim)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "worker ", id, " has KV layout ", LayoutString(layout), " (",
        FileOrUnknown(registration.model_name), ") but the router's model (", model_.file_name,
        ") has layers=", model_.n_layers, " kv_heads=", model_.n_kv_heads,
        " head_dim=", model_.head_dim));
  }
  for (const auto& [other_id, entry] : workers_) {
    if (other_id == id || now - entry.last_heartbeat > heartbeat_timeout_) continue;
    const v1::KvLayoutInfo& other = entry.registration.kv_layout;
    const bool block_size_differs = layout.block_size() > 0 && other.block_size() > 0 &&
                                    layout.block_size() != other.block_size();
    const bool dtype_differs =
        !layout.dtype().empty() && !other.dtype().empty() && layout.dtype() != other.dtype();
    if (block_size_differs || dtype_differs) {
      return absl::FailedPreconditionError(absl::StrCat(
          "worker ", id, " has KV layout ", LayoutString(layout), " but the registered worker ",
          other_id, " has ", LayoutString(other),
          ": every worker must use the same KV block size and dtype"));
    }
  }
  return absl::OkStatus();
}

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
  const absl::Time now = clock_();
  absl::ReleasableMutexLock lock(&mu_);
  if (absl::Status s = CheckCompatible(registration, now); !s.ok()) return s;
  Entry& entry = workers_[registration.worker_id];
  entry.registration = registration;
  entry.last_heartbeat = now;
  entry.dispatched_since_heartbeat = 0;
  entry.blocks_dispatched_since_heartbeat = 0;
  entry.blocks_released_since_heartbeat = 0;
  entry.unreachable = false;
  lock.Release();
  {
    absl::MutexLock listener_lock(&listener_mu_);
    if (registration_listener_) registration_listener_(registration.address);
  }
  NotifyCapacity();
  return absl::OkStatus();
}

bool WorkerRegistry::Heartbeat(const std::string& worker_id, const v1::WorkerLoad& load) {
  {
    absl::MutexLock lock(&mu_);
    auto it = workers_.find(worker_id);
    if (it == workers_.end()) return false;
    it->second.registration.load = load;
    it->second.last_heartbeat = clock_();
    it->second.dispatched_since_heartbeat = 0;
    it->second.blocks_dispatched_since_heartbeat = 0;
    it->second.blocks_released_since_heartbeat = 0;
    it->second.unreachable = false;
  }
  NotifyCapacity();
  return true;
}

void WorkerRegistry::NoteReleased(const std::string& worker_id, int64_t kv_blocks) {
  absl::MutexLock lock(&mu_);
  auto it = workers_.find(worker_id);
  if (it != workers_.end()) it->second.blocks_released_since_heartbeat += kv_blocks;
}

void WorkerRegistry::SetCapacityListener(std::function<void()> listener) {
  absl::MutexLock lock(&listener_mu_);
  capacity_listener_ = std::move(listener);
}

void WorkerRegistry::SetRegistrationListener(
    std::function<void(const std::string& address)> listener) {
  absl::MutexLock lock(&listener_mu_);
  registration_listener_ = std::move(listener);
}

void WorkerRegistry::NotifyCapacity() {
  absl::MutexLock lock(&listener_mu_);
  if (capacity_listener_) capacity_listener_();
}

void WorkerRegistry::MarkUnreachable(const std::string& worker_id) {
  absl::MutexLock lock(&mu_);
  auto it = workers_.find(worker_id);
  if (it != workers_.end()) it->second.unreachable = true;
}

bool WorkerRegistry::Deregister(const std::string& worker_id, const std::string& address) {
  absl::MutexLock lock(&mu_);
  auto it = workers_.find(worker_id);
  if (it == workers_.end()) return false;
  if (!address.empty() && it->second.registration.address != address) return false;
  workers_.erase(it);
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
    s.healthy = age <= heartbeat_timeout_ && !entry.unreachable;
    s.dispatched_since_heartbeat = entry.dispatched_since_heartbeat;
    s.blocks_dispatched_since_heartbeat = entry.blocks_dispatched_since_heartbeat;
    s.blocks_released_since_heartbeat = entry.blocks_released_since_heartbeat;
    out.push_back(std::move(s));
  }
  return out;
}

}  // namespace pdserve::router
