#include "tests/decode_node/decode_test_support.h"

#include <cstring>

#include "gtest/gtest.h"
#include "xxhash.h"

namespace pdserve::decode::testing {

LocalPrefill PrefillLocally(engine::Engine& engine, const std::vector<int32_t>& prompt,
                            const sampling::SamplingParams& params) {
  LocalPrefill out;
  out.n_prompt = static_cast<int64_t>(prompt.size());
  kv::KvBlockPool& pool = engine.kv_pool();
  const int64_t block_size = pool.layout().block_size;
  const int64_t n_blocks = (out.n_prompt + block_size - 1) / block_size;
  absl::StatusOr<std::vector<kv::BlockId>> ids = pool.Allocate(n_blocks);
  EXPECT_TRUE(ids.ok()) << ids.status();
  if (!ids.ok()) return out;
  kv::BlockTable table;
  table.blocks = *ids;
  std::vector<engine::BatchToken> batch;
  for (int64_t p = 0; p < out.n_prompt; ++p) {
    batch.push_back(engine::BatchToken{prompt[p], p, &table, p == out.n_prompt - 1});
  }
  absl::StatusOr<std::vector<float>> logits = engine.forward().Forward(batch);
  EXPECT_TRUE(logits.ok()) << logits.status();
  if (logits.ok()) {
    out.first_token = sampling::SampleToken(*logits, params, out.n_prompt, prompt);
    for (kv::BlockId id : table.blocks) {
      out.blocks.emplace_back(reinterpret_cast<const char*>(pool.BlockData(id)),
                              pool.layout().BlockBytes());
    }
  }
  EXPECT_TRUE(pool.Free(table.blocks).ok());
  return out;
}

void RecomputeChecksum(v1::KvBlock& block) {
  block.set_checksum(XXH3_64bits(block.data().data(), block.data().size()));
}

std::vector<v1::KvChunk> MakeChunks(const std::string& request_id, const v1::KvLayoutInfo& layout,
                                    const LocalPrefill& prefill, int blocks_per_chunk) {
  std::vector<v1::KvChunk> chunks;
  const int64_t n_blocks = static_cast<int64_t>(prefill.blocks.size());
  const int64_t block_size = layout.block_size();
  for (int64_t i = 0; i < n_blocks; ++i) {
    if (i % blocks_per_chunk == 0) {
      chunks.emplace_back();
      chunks.back().set_request_id(request_id);
    }
    v1::KvBlock* block = chunks.back().add_blocks();
    block->set_index(static_cast<int32_t>(i));
    block->set_n_tokens(static_cast<int32_t>(std::min(block_size, prefill.n_prompt - i * block_size)));
    block->set_data(prefill.blocks[i]);
    RecomputeChecksum(*block);
  }
  if (chunks.empty()) chunks.emplace_back();
  *chunks.front().mutable_layout() = layout;
  chunks.front().set_n_prompt_tokens(static_cast<int32_t>(prefill.n_prompt));
  chunks.back().set_last(true);
  chunks.back().set_first_token(prefill.first_token);
  return chunks;
}

grpc::Status PushChunks(v1::KvReceiver::Stub& stub, const std::vector<v1::KvChunk>& chunks,
                        v1::PushKvResponse* response) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  v1::PushKvResponse local;
  std::unique_ptr<grpc::ClientWriter<v1::KvChunk>> writer =
      stub.PushKv(&context, response != nullptr ? response : &local);
  for (const v1::KvChunk& chunk : chunks) {
    if (!writer->Write(chunk)) break;  // the server answered early; Finish has its status
  }
  writer->WritesDone();
  return writer->Finish();
}

DecodeOutcome RunDecode(v1::DecodeWorker::Stub& decode, v1::KvReceiver::Stub& kv,
                        const v1::DecodeRequest& request, const std::vector<v1::KvChunk>& chunks,
                        const RunOptions& options) {
  DecodeOutcome out;
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + options.deadline));
  std::unique_ptr<grpc::ClientReader<v1::DecodeEvent>> reader = decode.Decode(&context, request);
  v1::DecodeEvent event;
  bool cancelled = false;
  while (reader->Read(&event)) {
    if (event.has_reserved()) {
      out.reserved = true;
      out.reserved_blocks = event.reserved().kv_blocks();
      if (options.on_reserved) options.on_reserved();
      out.handoff = event.reserved().handoff();
      if (options.cancel_after_reserved) {
        context.TryCancel();
        cancelled = true;
      } else if (options.push) {
        std::vector<v1::KvChunk> with_token = chunks;
        if (!with_token.empty()) {
          with_token.front().set_transfer_token(
              options.token.value_or(event.reserved().handoff().transfer_token()));
        }
        out.push_status = PushChunks(kv, with_token);
      }
    } else if (event.has_token()) {
      out.streamed.push_back(event.token().token_id());
      out.indices.push_back(event.token().index());
      out.arrival.push_back(absl::Now());
      if (options.on_token && !cancelled &&
          !options.on_token(static_cast<int>(out.streamed.size()))) {
        context.TryCancel();
        cancelled = true;
      }
    } else if (event.has_finished()) {
      out.finished = true;
      out.finish_reason = event.finished().finish_reason();
      out.completion_tokens = event.finished().completion_tokens();
      out.prompt_tokens_computed = event.finished().prompt_tokens_computed();
      out.finished_at = absl::Now();
    }
  }
  out.status = reader->Finish();
  return out;
}

std::vector<int32_t> FullOutput(const DecodeOutcome& outcome, int32_t first_token) {
  std::vector<int32_t> out;
  if (outcome.completion_tokens == 0) return out;  // ended on an end token made by prefill
  out.push_back(first_token);
  out.insert(out.end(), outcome.streamed.begin(), outcome.streamed.end());
  return out;
}

}  // namespace pdserve::decode::testing
