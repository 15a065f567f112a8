#pragma once
// Helpers for the decode worker's tests: a local engine playing the prefill worker (it computes
// the prompt's KV blocks and first token exactly as engine::Generate does), and a client that
// runs one request against an in-process decode worker the way the router would.

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "common/engine/engine.h"
#include "common/sampling/sampler.h"
#include "kv_transfer.grpc.pb.h"
#include "worker.grpc.pb.h"

namespace pdserve::decode::testing {

// The prompt's KV as a prefill worker would ship it.
struct LocalPrefill {
  std::vector<std::string> blocks;  // ceil(n_prompt / block_size) blocks of BlockBytes() each
  int32_t first_token = 0;
  int64_t n_prompt = 0;
};
// Runs the prompt through `engine` (Forward over every position into fresh blocks of its pool)
// and samples the first token at position n_prompt with previous = prompt, as Generate does.
// The blocks are returned to the pool.
LocalPrefill PrefillLocally(engine::Engine& engine, const std::vector<int32_t>& prompt,
                            const sampling::SamplingParams& params);

// Chunks for KvReceiver.PushKv: `blocks_per_chunk` blocks each, the layout and prompt size in
// the first, the first token and `last` in the last; checksums computed over the data. No
// transfer token: RunDecode puts the reservation's into the first chunk.
std::vector<v1::KvChunk> MakeChunks(const std::string& request_id, const v1::KvLayoutInfo& layout,
                                    const LocalPrefill& prefill, int blocks_per_chunk = 2);
void RecomputeChecksum(v1::KvBlock& block);

// Sends the chunks over one PushKv call.
grpc::Status PushChunks(v1::KvReceiver::Stub& stub, const std::vector<v1::KvChunk>& chunks,
                        v1::PushKvResponse* response = nullptr);

struct DecodeOutcome {
  v1::KvHandoff handoff;  // from `reserved`
  grpc::Status status;
  grpc::Status push_status;
  bool reserved = false;
  int32_t reserved_blocks = 0;
  std::vector<int32_t> streamed;    // DecodeToken ids, index >= 1, in order
  std::vector<int32_t> indices;     // their indices
  std::vector<absl::Time> arrival;  // when each streamed token was read
  bool finished = false;
  std::string finish_reason;
  int32_t completion_tokens = -1;
  int32_t prompt_tokens_computed = -1;
  absl::Time finished_at = absl::InfiniteFuture();
};

struct RunOptions {
  absl::Duration deadline = absl::Seconds(60);
  bool push = true;  // false: reserve only, never send the KV
  // Called after each streamed token with the number read so far; return false to cancel.
  std::function<bool(int)> on_token;
  // Called once `reserved` has arrived, before the KV is pushed.
  std::function<void()> on_reserved;
  bool cancel_after_reserved = false;  // cancel the call instead of pushing the KV
  // The transfer token the push presents; the one `reserved` carried when unset.
  std::optional<std::string> token;
};

// Decode(request): reads `reserved`, pushes `chunks` with the reservation's transfer token (or
// options.token), reads every later event.
DecodeOutcome RunDecode(v1::DecodeWorker::Stub& decode, v1::KvReceiver::Stub& kv,
                        const v1::DecodeRequest& request, const std::vector<v1::KvChunk>& chunks,
                        const RunOptions& options = {});

// The full output the worker produced: the first token (unless the sequence ended on it) then
// the streamed ones; comparable with GenerationResult::output_ids.
std::vector<int32_t> FullOutput(const DecodeOutcome& outcome, int32_t first_token);

}  // namespace pdserve::decode::testing
