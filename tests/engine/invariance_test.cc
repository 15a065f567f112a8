// Results do not depend on how the work is split: thread count, batch company, KV cache on or
// off (up to a near-tie), and where in the pool a sequence's blocks lie.

#include <algorithm>
#include <cstring>
#include <random>

#include "common/engine/generator.h"
#include "gtest/gtest.h"
#include "tests/engine/test_models.h"

namespace pdserve::engine {
namespace {

// Blocks for n_positions positions of one sequence, freed at scope end.
class TestSequence {
 public:
  TestSequence(kv::KvBlockPool& pool, int64_t n_positions) : pool_(pool) {
    const int bs = pool.layout().block_size;
    absl::StatusOr<std::vector<kv::BlockId>> blocks = pool.Allocate((n_positions + bs - 1) / bs);
    EXPECT_TRUE(blocks.ok()) << blocks.status();
    if (blocks.ok()) table_.blocks = *blocks;
  }
  TestSequence(kv::KvBlockPool& pool, std::vector<kv::BlockId> blocks) : pool_(pool) {
    table_.blocks = std::move(blocks);
  }
  ~TestSequence() { EXPECT_TRUE(pool_.Free(table_.blocks).ok()); }
  const kv::BlockTable* table() const { return &table_; }

 private:
  kv::KvBlockPool& pool_;
  kv::BlockTable table_;
};

// Logits at the last position after running `ids` from `first_position` on.
std::vector<float> RunTokens(ForwardPass& forward, const TestSequence& seq,
                             const std::vector<int32_t>& ids, int64_t first_position = 0) {
  std::vector<BatchToken> batch;
  for (size_t i = 0; i < ids.size(); ++i) {
    batch.push_back({ids[i], first_position + static_cast<int64_t>(i), seq.table(),
                     i + 1 == ids.size()});
  }
  absl::StatusOr<std::vector<float>> logits = forward.Forward(batch);
  EXPECT_TRUE(logits.ok()) << logits.status();
  return logits.ok() ? *logits : std::vector<float>{};
}

int32_t Argmax(const std::vector<float>& logits, size_t begin, size_t n) {
  return static_cast<int32_t>(std::max_element(logits.begin() + begin, logits.begin() + begin + n) -
                              (logits.begin() + begin));
}

bool BitwiseEqual(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

std::vector<int32_t> Encode(const Engine& engine, const std::string& text) {
  absl::StatusOr<std::vector<int32_t>> ids = engine.tokenizer().Encode(text, {});
  EXPECT_TRUE(ids.ok()) << ids.status();
  return ids.ok() ? *ids : std::vector<int32_t>{};
}

// Prefill, then `n_steps` greedy decode steps; returns all the logits produced, concatenated.
std::vector<float> PrefillAndDecode(Engine& engine, const std::vector<int32_t>& prompt,
                                    int n_steps) {
  TestSequence seq(engine.kv_pool(), prompt.size() + n_steps);
  std::vector<float> all = RunTokens(engine.forward(), seq, prompt);
  const size_t vocab = engine.config().vocab_size;
  for (int step = 0; step < n_steps; ++step) {
    const int32_t next = Argmax(all, all.size() - vocab, vocab);
    std::vector<float> logits =
        RunTokens(engine.forward(), seq, {next}, static_cast<int64_t>(prompt.size()) + step);
    all.insert(all.end(), logits.begin(), logits.end());
  }
  return all;
}

class ModelInvarianceTest : public ::testing::TestWithParam<std::string> {
 protected:
  EngineOptions Options() const {
    return GetParam() == "smollm2" ? testing::SmolLm2Options()
                                   : testing::TinyModelOptions(testing::TinyModelFormat::kGguf);
  }
};

TEST_P(ModelInvarianceTest, ThreadCountDoesNotChangeLogits) {
  EngineOptions options = Options();
  options.n_threads = 1;
  std::unique_ptr<Engine> one = testing::LoadEngineOrDie(options);
  options.n_threads = 2;
  std::unique_ptr<Engine> two = testing::LoadEngineOrDie(options);
  const std::vector<int32_t> prompt = Encode(*one, "Once upon a time, there was a tiny robot");
  const std::vector<float> a = PrefillAndDecode(*one, prompt, 8);
  const std::vector<float> b = PrefillAndDecode(*two, prompt, 8);
  EXPECT_TRUE(BitwiseEqual(a, b));
}

TEST_P(ModelInvarianceTest, DecodeInABatchOfEightEqualsDecodeAlone) {
  std::unique_ptr<Engine> engine = testing::LoadEngineOrDie(Options());
  const std::vector<std::string> prompts = {
      "Once upon a time", "The cat sat", "Lily and Tom went to the park", "A big red ball",
      "One day", "The sun was shining and the birds", "Tim had a dog", "She said hello"};
  const size_t vocab = engine->config().vocab_size;
  const int n_steps = 6;

  // Each sequence alone: prefill, then greedy decode steps one at a time.
  std::vector<std::vector<float>> alone;
  for (const std::string& p : prompts) alone.push_back(PrefillAndDecode(*engine, Encode(*engine, p), n_steps));

  // All eight together: the same prefills, then decode steps as one batch of eight.
  std::vector<std::unique_ptr<TestSequence>> seqs;
  std::vector<std::vector<int32_t>> ids;
  std::vector<std::vector<float>> batched(prompts.size());
  for (size_t s = 0; s < prompts.size(); ++s) {
    ids.push_back(Encode(*engine, prompts[s]));
    seqs.push_back(std::make_unique<TestSequence>(engine->kv_pool(), ids[s].size() + n_steps));
    batched[s] = RunTokens(engine->forward(), *seqs[s], ids[s]);
  }
  for (int step = 0; step < n_steps; ++step) {
    std::vector<BatchToken> batch;
    for (size_t s = 0; s < prompts.size(); ++s) {
      const int32_t next = Argmax(batched[s], batched[s].size() - vocab, vocab);
      batch.push_back({next, static_cast<int64_t>(ids[s].size()) + step, seqs[s]->table(), true});
    }
    absl::StatusOr<std::vector<float>> logits = engine->forward().Forward(batch);
    ASSERT_TRUE(logits.ok()) << logits.status();
    for (size_t s = 0; s < prompts.size(); ++s) {
      batched[s].insert(batched[s].end(), logits->begin() + s * vocab,
                        logits->begin() + (s + 1) * vocab);
    }
  }
  for (size_t s = 0; s < prompts.size(); ++s) {
    EXPECT_TRUE(BitwiseEqual(alone[s], batched[s])) << "sequence " << s << ": " << prompts[s];
  }
}

TEST_P(ModelInvarianceTest, KvCacheAndRecomputeAgreeUpToANearTie) {
  std::unique_ptr<Engine> engine = testing::LoadEngineOrDie(Options());
  GenerationRequest request;
  request.prompt_ids = Encode(*engine, "Once upon a time, in a small village,");
  request.max_new_tokens = 40;
  request.ignore_eos = true;
  absl::StatusOr<GenerationResult> cached = Generate(*engine, request, nullptr);
  request.use_kv_cache = false;
  absl::StatusOr<GenerationResult> recomputed = Generate(*engine, request, nullptr);
  ASSERT_TRUE(cached.ok()) << cached.status();
  ASSERT_TRUE(recomputed.ok()) << recomputed.status();
  ASSERT_EQ(cached->output_ids.size(), recomputed->output_ids.size());
  const auto mismatch = std::mismatch(cached->output_ids.begin(), cached->output_ids.end(),
                                      recomputed->output_ids.begin());
  if (mismatch.first == cached->output_ids.end()) return;  // identical

  // A divergence is allowed only where the two best logits are within 0.05.
  const size_t at = mismatch.first - cached->output_ids.begin();
  std::vector<int32_t> prefix = request.prompt_ids;
  prefix.insert(prefix.end(), cached->output_ids.begin(), cached->output_ids.begin() + at);
  TestSequence seq(engine->kv_pool(), prefix.size());
  std::vector<float> logits = RunTokens(engine->forward(), seq, prefix);
  std::partial_sort(logits.begin(), logits.begin() + 2, logits.end(), std::greater<float>());
  const float gap = logits[0] - logits[1];
  std::printf("first divergence at generated token %zu, top-2 logit gap %.5f\n", at, gap);
  EXPECT_LT(gap, 0.05f) << "KV-cache and recompute outputs diverge at token " << at;
}

TEST_P(ModelInvarianceTest, FragmentedPoolAndShuffledBlocksGiveTheSameOutput) {
  EngineOptions options = Options();
  options.kv_block_size = 4;  // many blocks even for a short sequence
  std::unique_ptr<Engine> engine = testing::LoadEngineOrDie(options);
  const std::vector<int32_t> prompt = Encode(*engine, "The little dog ran to the big tree and");
  const std::vector<float> reference = PrefillAndDecode(*engine, prompt, 12);

  // Fragment the pool: take every block, give back every other one.
  kv::KvBlockPool& pool = engine->kv_pool();
  absl::StatusOr<std::vector<kv::BlockId>> all = pool.Allocate(pool.n_free());
  ASSERT_TRUE(all.ok()) << all.status();
  std::vector<kv::BlockId> kept, released;
  for (size_t i = 0; i < all->size(); ++i) ((i % 2 == 0) ? released : kept).push_back((*all)[i]);
  ASSERT_TRUE(pool.Free(released).ok());

  // A sequence on shuffled, non-adjacent blocks.
  const int bs = pool.layout().block_size;
  const size_t n_blocks = (prompt.size() + 12 + bs - 1) / bs;
  absl::StatusOr<std::vector<kv::BlockId>> blocks = pool.Allocate(n_blocks);
  ASSERT_TRUE(blocks.ok()) << blocks.status();
  std::shuffle(blocks->begin(), blocks->end(), std::mt19937(7));
  {
    TestSequence seq(pool, *blocks);
    std::vector<float> out = RunTokens(engine->forward(), seq, prompt);
    const size_t vocab = engine->config().vocab_size;
    for (int step = 0; step < 12; ++step) {
      const int32_t next = Argmax(out, out.size() - vocab, vocab);
      std::vector<float> logits = RunTokens(engine->forward(), seq, {next},
                                            static_cast<int64_t>(prompt.size()) + step);
      out.insert(out.end(), logits.begin(), logits.end());
    }
    EXPECT_TRUE(BitwiseEqual(out, reference));
  }
  ASSERT_TRUE(pool.Free(kept).ok());
  EXPECT_EQ(pool.n_free(), pool.n_total());
}

INSTANTIATE_TEST_SUITE_P(Models, ModelInvarianceTest, ::testing::Values("stories260K", "smollm2"));

}  // namespace
}  // namespace pdserve::engine
