#include "router/worker_selection.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace pdserve::router {

int64_t KvBlocksNeeded(int64_t n_tokens, int32_t block_size) {
  if (block_size < 1) return n_tokens;
  return (n_tokens + block_size - 1) / block_size;
}

absl::StatusOr<WorkerSnapshot> SelectPrefillWorker(const std::vector<WorkerSnapshot>& workers) {
  const WorkerSnapshot* best = nullptr;
  int64_t best_load = 0;
  int n_prefill = 0;
  for (const WorkerSnapshot& w : workers) {
    if (w.role != v1::WORKER_ROLE_PREFILL) continue;
    ++n_prefill;
    if (!w.healthy) continue;
    const int64_t load = int64_t{w.load.queue_length()} + w.load.active_sequences() +
                         w.dispatched_since_heartbeat;
    if (best == nullptr || load < best_load || (load == best_load && w.worker_id < best->worker_id)) {
      best = &w;
      best_load = load;
    }
  }
  if (best == nullptr) {
    return absl::UnavailableError(
        n_prefill == 0 ? "no prefill worker is registered"
                       : absl::StrCat("none of the ", n_prefill,
                                      " registered prefill workers is healthy (missed heartbeats)"));
  }
  return *best;
}

int64_t DecodeFreeBlocks(const WorkerSnapshot& worker) {
  return std::min<int64_t>(worker.load.free_kv_blocks() - worker.blocks_dispatched_since_heartbeat +
                               worker.blocks_released_since_heartbeat,
                           worker.load.total_kv_blocks());
}

absl::StatusOr<WorkerSnapshot> SelectDecodeWorker(const std::vector<WorkerSnapshot>& workers,
                                                  int64_t n_tokens) {
  const WorkerSnapshot* best_now = nullptr;
  int64_t best_now_free = 0;
  const WorkerSnapshot* best_later = nullptr;
  int64_t best_later_free = 0;
  int n_decode = 0;
  int n_healthy = 0;
  int64_t largest_total = 0;
  int64_t needed_on_largest = 0;
  for (const WorkerSnapshot& w : workers) {
    if (w.role != v1::WORKER_ROLE_DECODE) continue;
    ++n_decode;
    if (!w.healthy) continue;
    ++n_healthy;
    const int64_t needed = KvBlocksNeeded(n_tokens, w.kv_layout.block_size());
    const int64_t free_blocks = DecodeFreeBlocks(w);
    if (w.load.total_kv_blocks() >= largest_total) {
      largest_total = w.load.total_kv_blocks();
      needed_on_largest = needed;
    }
    auto better = [&](const WorkerSnapshot* best, int64_t best_free) {
      return best == nullptr || free_blocks > best_free ||
             (free_blocks == best_free && w.worker_id < best->worker_id);
    };
    if (needed <= free_blocks) {
      if (better(best_now, best_now_free)) {
        best_now = &w;
        best_now_free = free_blocks;
      }
    } else if (needed <= w.load.total_kv_blocks()) {
      if (better(best_later, best_later_free)) {
        best_later = &w;
        best_later_free = free_blocks;
      }
    }
  }
  if (best_now != nullptr) return *best_now;
  if (best_later != nullptr) return *best_later;
  if (n_decode == 0) return absl::UnavailableError("no decode worker is registered");
  if (n_healthy == 0) {
    return absl::UnavailableError(absl::StrCat(
        "none of the ", n_decode, " registered decode workers is healthy (missed heartbeats)"));
  }
  return absl::UnavailableError(absl::StrCat(
      "no healthy decode worker can hold ", n_tokens, " tokens (", needed_on_largest,
      " KV blocks); the largest has ", largest_total, " blocks"));
}

}  // namespace pdserve::router
