#pragma once
// A prefill job that passes PrefillScheduler::Validate for `engine`: `n_tokens` prompt ids in
// stories260K's vocabulary and a handoff in the engine's own layout over grpc, for tests whose
// transport is a fake.

#include <string>

#include "common/engine/engine.h"
#include "common/kv_transfer/transfer_token.h"
#include "prefill_node/prefill_scheduler.h"

namespace pdserve::prefill::testing {

inline PrefillJob ValidJob(engine::Engine& engine, const std::string& id, int n_tokens) {
  PrefillJob job;
  job.request_id = id;
  for (int i = 0; i < n_tokens; ++i) job.prompt_ids.push_back(1 + (i * 13 + 7) % 500);
  const kv::KvLayout& layout = engine.kv_pool().layout();
  job.handoff.request_id = id;
  job.handoff.control_address = "fake:1";
  job.handoff.transfer_token = std::string(kv_transfer::kTransferTokenBytes, 'k');
  job.handoff.layout = layout;
  for (int b = 0; b * layout.block_size < n_tokens; ++b) job.handoff.target_blocks.push_back(b);
  job.handoff.offers.push_back({"grpc", "", ""});
  return job;
}

}  // namespace pdserve::prefill::testing
