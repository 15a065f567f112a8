// An Engine whose KV pool lives in shared memory (EngineOptions::kv_pool_in_shared_memory)
// computes exactly what one with a private pool does.
#include <sys/stat.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "common/engine/engine.h"
#include "common/engine/generator.h"
#include "common/kv_transfer/shm/shared_memory_region.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/stories_engine.h"

namespace pdserve::engine {
namespace {

bool ShmExists(const std::string& name) {
  struct stat st;
  return stat(("/dev/shm" + name).c_str(), &st) == 0;
}

std::unique_ptr<Engine> LoadStoriesInSharedMemory() {
  EngineOptions options;
  options.model_path = test_support::StoriesGgufPath();
  options.kv_pool_in_shared_memory = true;
  absl::StatusOr<std::unique_ptr<Engine>> engine = Engine::Load(options);
  EXPECT_TRUE(engine.ok()) << engine.status();
  return engine.ok() ? *std::move(engine) : nullptr;
}

std::vector<int32_t> GreedyTokens(Engine& engine, const std::string& prompt) {
  absl::StatusOr<std::vector<int32_t>> ids =
      engine.tokenizer().Encode(prompt, tokenizer::EncodeOptions{});
  EXPECT_TRUE(ids.ok()) << ids.status();
  GenerationRequest request;
  request.prompt_ids = ids.ok() ? *ids : std::vector<int32_t>{};
  request.max_new_tokens = 60;
  request.ignore_eos = true;
  absl::StatusOr<GenerationResult> result = Generate(engine, request, nullptr);
  EXPECT_TRUE(result.ok()) << result.status();
  return result.ok() ? result->output_ids : std::vector<int32_t>{};
}

std::vector<uint8_t> PoolBytes(kv::KvBlockPool& pool) {
  const size_t block_bytes = pool.layout().BlockBytes();
  std::vector<uint8_t> bytes(pool.n_total() * block_bytes);
  for (kv::BlockId id = 0; id < pool.n_total(); ++id) {
    EXPECT_TRUE(pool.ReadBlock(id, absl::MakeSpan(bytes.data() + id * block_bytes, block_bytes))
                    .ok());
  }
  return bytes;
}

TEST(SharedMemoryEngineTest, GreedyTokensAndKvBytesEqualAPrivatePool) {
  std::unique_ptr<Engine> private_pool = test_support::LoadStoriesEngine(0);
  std::unique_ptr<Engine> shared_pool = LoadStoriesInSharedMemory();
  ASSERT_NE(private_pool, nullptr);
  ASSERT_NE(shared_pool, nullptr);
  EXPECT_TRUE(private_pool->kv_pool_shm_name().empty());
  EXPECT_THAT(shared_pool->kv_pool_shm_name(), ::testing::StartsWith("/pdserve-kv-"));
  EXPECT_TRUE(shared_pool->kv_pool().on_host());
  EXPECT_EQ(shared_pool->kv_pool().n_total(), private_pool->kv_pool().n_total());

  for (const std::string prompt : {"Once upon a time", "The little dog"}) {
    const std::vector<int32_t> expected = GreedyTokens(*private_pool, prompt);
    ASSERT_EQ(expected.size(), 60u);
    EXPECT_EQ(GreedyTokens(*shared_pool, prompt), expected) << prompt;
  }
  // Same computation, same block allocation: the pools hold the same K/V, and the bytes are in
  // the named object where a peer process would find them.
  const std::vector<uint8_t> expected_bytes = PoolBytes(private_pool->kv_pool());
  EXPECT_EQ(PoolBytes(shared_pool->kv_pool()), expected_bytes);
  absl::StatusOr<kv_transfer::SharedMemoryRegion> peer =
      kv_transfer::SharedMemoryRegion::Open(shared_pool->kv_pool_shm_name());
  ASSERT_TRUE(peer.ok()) << peer.status();
  ASSERT_EQ(peer->size(), expected_bytes.size());
  EXPECT_TRUE(std::equal(expected_bytes.begin(), expected_bytes.end(), peer->data()));
  EXPECT_TRUE(std::any_of(expected_bytes.begin(), expected_bytes.end(),
                          [](uint8_t b) { return b != 0; }));
}

TEST(SharedMemoryEngineTest, DestroyingTheEngineUnlinksThePool) {
  std::unique_ptr<Engine> engine = LoadStoriesInSharedMemory();
  ASSERT_NE(engine, nullptr);
  const std::string name = engine->kv_pool_shm_name();
  EXPECT_TRUE(ShmExists(name));
  engine.reset();
  EXPECT_FALSE(ShmExists(name));
}

TEST(SharedMemoryEngineTest, CudaWithASharedMemoryPoolIsInvalidArgument) {
  EngineOptions options;
  options.model_path = test_support::StoriesGgufPath();
  options.device = Device::kCuda;
  options.kv_pool_in_shared_memory = true;
  absl::StatusOr<std::unique_ptr<Engine>> engine = Engine::Load(options);
  EXPECT_EQ(engine.status().code(), absl::StatusCode::kInvalidArgument) << engine.status();
  EXPECT_THAT(engine.status().message(), ::testing::HasSubstr("host-only"));
}

}  // namespace
}  // namespace pdserve::engine
