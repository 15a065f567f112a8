#pragma once
// Which workers serve a request. Plain functions over a registry snapshot.
//
// Prefill: the healthy prefill worker with the least load = queue_length + active_sequences +
// requests the router sent it since its last heartbeat; a tie goes to the lowest id.
//
// Decode: a request needs ceil((prompt + max_tokens) / block_size) KV blocks of a worker (its own
// block size). Free blocks (DecodeFreeBlocks) = the last heartbeat's free_kv_blocks, minus the
// blocks of requests the router sent it since, plus those of its requests that ended since. Among healthy decode workers whose free blocks fit the request, the one
// with the most free blocks wins (tie: lowest id). When none fits now, one whose total blocks fit
// is chosen the same way (the decode worker waits for room). None: UNAVAILABLE.

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "router/worker_registry.h"

namespace pdserve::router {

int64_t KvBlocksNeeded(int64_t n_tokens, int32_t block_size);

// The decode worker's free KV blocks as the router reckons them now (at most its total).
int64_t DecodeFreeBlocks(const WorkerSnapshot& worker);

absl::StatusOr<WorkerSnapshot> SelectPrefillWorker(const std::vector<WorkerSnapshot>& workers);

// n_tokens = prompt + max_tokens.
absl::StatusOr<WorkerSnapshot> SelectDecodeWorker(const std::vector<WorkerSnapshot>& workers,
                                                  int64_t n_tokens);

}  // namespace pdserve::router
