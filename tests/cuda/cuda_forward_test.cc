// The CUDA backend of the engine (common/engine/cuda) against the CPU backend and the goldens:
// greedy stories260K, logits, the KV blocks it writes, mixed prefill/decode batches, bad input.
// Runs on a GPU (exit 77 without one) and, in CI, over the host emulation of CUDA
// (tests/cuda/emulation), where the kernels are the same code compiled as C++.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "common/engine/backend.h"
#include "common/engine/cpu_llama_forward.h"
#include "common/engine/cuda/cuda_llama_forward.h"
#include "common/engine/forward_pass.h"
#include "common/kv/kv_block_pool.h"
#include "common/gguf/gguf_file.h"
#include "common/model/gguf_llama_loader.h"
#include "common/model/load_model.h"
#include "common/tokenizer/tokenizer.h"
#include "gtest/gtest.h"
#include "kernels/cpu/isa.h"
#include "kernels/cpu/thread_pool.h"
#include "tests/engine/golden_cases.h"

namespace pdserve::engine {
namespace {

using engine::testing::GoldenCase;
using engine::testing::LoadGoldenCases;
using engine::testing::SharedPath;

// |CUDA logit - CPU logit| allowed. f32 path: only the order of f32 sums differs. bf16 path:
// bf16 weights and matrix-product activations through stories260K's five layers (0.19 measured
// under the host emulation).
constexpr float kF32LogitTolerance = 2e-3f;
constexpr float kLogitTolerance = 0.25f;
// The same for SmolLM2's 30 layers on the bf16 path (Q4_1 weights are exact in f32, rounded
// once to bf16; 0.18 measured under the host emulation).
constexpr float kSmolLm2LogitTolerance = 0.5f;

constexpr int kBlockSize = 16;
constexpr int64_t kPoolBlocks = 96;  // 1536 positions: several sequences of up to 512

struct TestModel {
  model::ModelWeights weights;
  kv::KvLayout layout;
};

std::unique_ptr<TestModel> LoadTestModel(const std::string& file,
                                         kernels::KvDtype dtype = kernels::KvDtype::kF32) {
  absl::StatusOr<model::ModelWeights> weights = model::LoadModel(SharedPath(file));
  if (!weights.ok()) {
    ADD_FAILURE() << file << ": " << weights.status();
    return nullptr;
  }
  auto m = std::make_unique<TestModel>();
  m->weights = *std::move(weights);
  m->layout = KvLayoutForModel(m->weights.config, kBlockSize, dtype);
  return m;
}

// A forward pass and its pool, on the CPU or through CreateCudaBackend.
struct Backend {
  std::unique_ptr<kernels::ThreadPool> threads;
  DeviceBackend parts;
  ForwardPass& forward() { return *parts.forward; }
  kv::KvBlockPool& pool() { return *parts.pool; }
};

std::unique_ptr<Backend> MakeCpu(const TestModel& m) {
  auto b = std::make_unique<Backend>();
  b->threads = std::make_unique<kernels::ThreadPool>(1);
  b->parts.pool = std::make_unique<kv::KvBlockPool>(m.layout, kPoolBlocks);
  b->parts.forward = std::make_unique<CpuLlamaForward>(m.weights, *b->parts.pool, *b->threads,
                                                       kernels::DetectBestIsa());
  return b;
}

std::unique_ptr<Backend> MakeCuda(const TestModel& m, CudaDtype dtype = CudaDtype::kAuto,
                                  bool graphs = true) {
  absl::StatusOr<DeviceBackend> parts =
      CreateCudaBackend(m.weights, m.layout, kPoolBlocks, CudaBackendOptions{dtype, graphs});
  if (!parts.ok()) {
    ADD_FAILURE() << "CreateCudaBackend: " << parts.status();
    return nullptr;
  }
  auto b = std::make_unique<Backend>();
  b->parts = *std::move(parts);
  return b;
}

// A sequence's blocks, allocated for `n_positions` and freed with the object.
class Sequence {
 public:
  Sequence(kv::KvBlockPool& pool, int64_t n_positions) : pool_(pool) {
    absl::StatusOr<std::vector<kv::BlockId>> ids =
        pool.Allocate((n_positions + kBlockSize - 1) / kBlockSize);
    EXPECT_TRUE(ids.ok()) << ids.status();
    if (ids.ok()) table_.blocks = *std::move(ids);
  }
  ~Sequence() { EXPECT_TRUE(pool_.Free(table_.blocks).ok()); }
  const kv::BlockTable* table() const { return &table_; }
  const std::vector<kv::BlockId>& blocks() const { return table_.blocks; }

 private:
  kv::KvBlockPool& pool_;
  kv::BlockTable table_;
};

std::vector<BatchToken> PromptBatch(const std::vector<int32_t>& ids, const Sequence& seq,
                                    int64_t first_position = 0) {
  std::vector<BatchToken> batch;
  for (size_t i = 0; i < ids.size(); ++i) {
    batch.push_back(BatchToken{ids[i], first_position + static_cast<int64_t>(i), seq.table(),
                               i + 1 == ids.size()});
  }
  return batch;
}

int32_t Argmax(const float* logits, int n) {
  return static_cast<int32_t>(std::max_element(logits, logits + n) - logits);
}

float Top2Gap(const float* logits, int n) {
  std::vector<float> v(logits, logits + n);
  std::partial_sort(v.begin(), v.begin() + 2, v.end(), std::greater<float>());
  return v[0] - v[1];
}

struct GreedyRun {
  std::vector<int32_t> tokens;
  std::vector<float> gaps;  // the top-2 logit gap of the step that chose each token
  std::vector<float> first_logits;
};

// Greedy decoding of n_new tokens after the prompt (prefill in one call, then one token a call).
GreedyRun Greedy(Backend& b, const std::vector<int32_t>& prompt, size_t n_new) {
  GreedyRun run;
  const int vocab = b.forward().config().vocab_size;
  Sequence seq(b.pool(), static_cast<int64_t>(prompt.size() + n_new));
  absl::StatusOr<std::vector<float>> logits = b.forward().Forward(PromptBatch(prompt, seq));
  EXPECT_TRUE(logits.ok()) << logits.status();
  if (!logits.ok()) return run;
  run.first_logits = *logits;
  while (run.tokens.size() < n_new) {
    run.tokens.push_back(Argmax(logits->data(), vocab));
    run.gaps.push_back(Top2Gap(logits->data(), vocab));
    if (run.tokens.size() == n_new) break;
    const int64_t position = static_cast<int64_t>(prompt.size() + run.tokens.size() - 1);
    const BatchToken next{run.tokens.back(), position, seq.table(), true};
    logits = b.forward().Forward({next});
    EXPECT_TRUE(logits.ok()) << logits.status();
    if (!logits.ok()) break;
  }
  return run;
}

float MaxAbsDiff(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  float worst = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    worst = std::max(worst, std::fabs(a[i] - b[i]));
  }
  return worst;
}

struct GoldenParam {
  const char* file;
  CudaDtype dtype;
};

class CudaForwardGoldenTest : public ::testing::TestWithParam<GoldenParam> {};

// f32 path (auto for these f32 checkpoints): greedy output equals the goldens token for token.
// bf16 path: it agrees with the CPU backend (which equals the goldens) up to a first divergence,
// which may only come where the CPU's top two logits are closer than twice the logit tolerance
// (two logits each off by at most e can swap only if they differ by less than 2e). The issue's
// stricter 0.05 rule is the f32 path's: bf16 first diverges at a gap of 0.053 on stories260K.
TEST_P(CudaForwardGoldenTest, GreedyMatchesTheGoldens) {
  const GoldenParam param = GetParam();
  const bool f32 = param.dtype != CudaDtype::kBF16;
  std::unique_ptr<TestModel> m = LoadTestModel(param.file);
  ASSERT_NE(m, nullptr);
  std::unique_ptr<Backend> cpu = MakeCpu(*m);
  std::unique_ptr<Backend> cuda = MakeCuda(*m, param.dtype);
  ASSERT_NE(cuda, nullptr);
  const std::vector<GoldenCase> cases = LoadGoldenCases();
  size_t matched = 0, total = 0;
  for (const GoldenCase& c : cases) {
    const GreedyRun want = Greedy(*cpu, c.prompt_ids, c.output_ids.size());
    ASSERT_EQ(want.tokens, c.output_ids) << "CPU backend differs from the golden of '" << c.prompt
                                         << "'";
    const GreedyRun got = Greedy(*cuda, c.prompt_ids, c.output_ids.size());
    ASSERT_EQ(got.tokens.size(), want.tokens.size());
    size_t same = 0;
    while (same < want.tokens.size() && got.tokens[same] == want.tokens[same]) ++same;
    matched += same;
    total += want.tokens.size();
    std::printf("[ info ] %s %s '%.40s': %zu of %zu greedy tokens equal the golden's%s\n",
                param.file, f32 ? "f32" : "bf16", c.prompt.c_str(), same, want.tokens.size(),
                same < want.tokens.size() ? " (then a near tie)" : "");
    if (f32) {
      EXPECT_EQ(got.tokens, c.output_ids) << "'" << c.prompt << "'";
    } else if (same < want.tokens.size()) {
      std::printf("[ info ]   CPU top-2 gap there: %.4f\n", want.gaps[same]);
      EXPECT_LT(want.gaps[same], 2 * kLogitTolerance)
          << "'" << c.prompt << "': CUDA chose " << got.tokens[same] << " over the CPU's "
          << want.tokens[same] << " at new token " << same << ", where the CPU's top-2 gap is "
          << want.gaps[same];
    }
    EXPECT_LT(MaxAbsDiff(got.first_logits, want.first_logits),
              f32 ? kF32LogitTolerance : kLogitTolerance)
        << c.prompt;
  }
  std::printf("[ info ] %s %s: %zu of %zu greedy tokens equal in all\n", param.file,
              f32 ? "f32" : "bf16", matched, total);
  EXPECT_EQ(cuda->pool().n_allocated(), 0);
}

INSTANTIATE_TEST_SUITE_P(
    Stories260K, CudaForwardGoldenTest,
    ::testing::Values(GoldenParam{"models/stories260K.bin", CudaDtype::kAuto},
                      GoldenParam{"models/stories260K.gguf", CudaDtype::kAuto},
                      GoldenParam{"models/stories260K.bin", CudaDtype::kBF16}),
    [](const ::testing::TestParamInfo<GoldenParam>& info) {
      return std::string(std::strstr(info.param.file, ".gguf") ? "gguf" : "bin") +
             (info.param.dtype == CudaDtype::kBF16 ? "_bf16" : "_auto");
    });

// Prefill logits of every golden prompt, CUDA vs CPU, with f32 and bf16 KV caches.
TEST(CudaForwardTest, LogitsAreCloseToTheCpus) {
  for (CudaDtype compute : {CudaDtype::kF32, CudaDtype::kBF16})
  for (kernels::KvDtype dtype : {kernels::KvDtype::kF32, kernels::KvDtype::kBF16}) {
    std::unique_ptr<TestModel> m = LoadTestModel("models/stories260K.bin", dtype);
    ASSERT_NE(m, nullptr);
    std::unique_ptr<Backend> cpu = MakeCpu(*m);
    std::unique_ptr<Backend> cuda = MakeCuda(*m, compute);
    ASSERT_NE(cuda, nullptr);
    float worst = 0;
    for (const GoldenCase& c : LoadGoldenCases()) {
      Sequence cpu_seq(cpu->pool(), static_cast<int64_t>(c.prompt_ids.size()));
      Sequence cuda_seq(cuda->pool(), static_cast<int64_t>(c.prompt_ids.size()));
      absl::StatusOr<std::vector<float>> want =
          cpu->forward().Forward(PromptBatch(c.prompt_ids, cpu_seq));
      absl::StatusOr<std::vector<float>> got =
          cuda->forward().Forward(PromptBatch(c.prompt_ids, cuda_seq));
      ASSERT_TRUE(want.ok()) << want.status();
      ASSERT_TRUE(got.ok()) << got.status();
      ASSERT_EQ(got->size(), static_cast<size_t>(m->weights.config.vocab_size));
      worst = std::max(worst, MaxAbsDiff(*got, *want));
    }
    const bool exact = compute == CudaDtype::kF32 && dtype == kernels::KvDtype::kF32;
    std::printf("[ info ] %s compute, %s KV: max |CUDA - CPU| prefill logit %.5f\n",
                compute == CudaDtype::kF32 ? "f32" : "bf16",
                dtype == kernels::KvDtype::kF32 ? "f32" : "bf16", worst);
    EXPECT_LT(worst, exact ? kF32LogitTolerance : kLogitTolerance);
  }
}

// The K/V a CUDA prefill stores are the CPU's (same layout, values within bf16 rounding): the
// blocks one backend writes can be shipped to a worker running the other.
TEST(CudaForwardTest, KvBlocksAreTheCpusLayout) {
  std::unique_ptr<TestModel> m = LoadTestModel("models/stories260K.bin");
  ASSERT_NE(m, nullptr);
  std::unique_ptr<Backend> cpu = MakeCpu(*m);
  std::unique_ptr<Backend> cuda = MakeCuda(*m, CudaDtype::kBF16);
  ASSERT_NE(cuda, nullptr);
  const std::vector<int32_t> prompt = LoadGoldenCases().at(0).prompt_ids;
  std::vector<int32_t> long_prompt;  // 3 blocks and a part
  while (long_prompt.size() < 3 * kBlockSize + 5) {
    long_prompt.insert(long_prompt.end(), prompt.begin(), prompt.end());
  }
  long_prompt.resize(3 * kBlockSize + 5);
  Sequence cpu_seq(cpu->pool(), static_cast<int64_t>(long_prompt.size()));
  Sequence cuda_seq(cuda->pool(), static_cast<int64_t>(long_prompt.size()));
  // Stale bytes in the CUDA pool's blocks must not matter for the positions written.
  ASSERT_TRUE(cpu->forward().Forward(PromptBatch(long_prompt, cpu_seq)).ok());
  ASSERT_TRUE(cuda->forward().Forward(PromptBatch(long_prompt, cuda_seq)).ok());

  const size_t block_bytes = m->layout.BlockBytes();
  const size_t per_position = m->layout.n_kv_heads * m->layout.head_dim;  // floats
  float worst = 0, largest = 0;
  for (size_t b = 0; b < cpu_seq.blocks().size(); ++b) {
    std::vector<uint8_t> want(block_bytes), got(block_bytes);
    ASSERT_TRUE(cpu->pool().ReadBlock(cpu_seq.blocks()[b], absl::MakeSpan(want)).ok());
    ASSERT_TRUE(cuda->pool().ReadBlock(cuda_seq.blocks()[b], absl::MakeSpan(got)).ok());
    const int64_t positions =
        std::min<int64_t>(kBlockSize, static_cast<int64_t>(long_prompt.size()) - b * kBlockSize);
    for (int layer = 0; layer < m->layout.n_layers; ++layer) {
      for (size_t slab : {m->layout.KSlabOffset(layer), m->layout.VSlabOffset(layer)}) {
        for (size_t i = 0; i < positions * per_position; ++i) {
          float w, g;
          std::memcpy(&w, want.data() + slab + 4 * i, 4);
          std::memcpy(&g, got.data() + slab + 4 * i, 4);
          worst = std::max(worst, std::fabs(w - g));
          largest = std::max(largest, std::fabs(w));
        }
      }
    }
  }
  std::printf("[ info ] K/V: max |CUDA - CPU| %.5f of values up to %.3f\n", worst, largest);
  ASSERT_GT(largest, 0.1f) << "the CPU wrote no K/V";
  EXPECT_LT(worst, 0.02f * largest);
}

// Decode tokens of several sequences and a prefill chunk of another, interleaved in one batch,
// give each sequence the logits it gets when run alone.
class CudaForwardMixedBatchTest : public ::testing::TestWithParam<CudaDtype> {};

TEST_P(CudaForwardMixedBatchTest, EqualsSequencesRunAlone) {
  std::unique_ptr<TestModel> m = LoadTestModel("models/stories260K.bin");
  ASSERT_NE(m, nullptr);
  std::unique_ptr<Backend> cuda = MakeCuda(*m, GetParam());
  ASSERT_NE(cuda, nullptr);
  const int vocab = m->weights.config.vocab_size;
  const std::vector<GoldenCase> cases = LoadGoldenCases();
  ASSERT_GE(cases.size(), 3u);
  const std::vector<int32_t>& a = cases[0].prompt_ids;
  const std::vector<int32_t>& b = cases[1].prompt_ids;
  const std::vector<int32_t>& c = cases[2].prompt_ids;
  const int32_t next_a = cases[0].output_ids.at(0);
  const int32_t next_b = cases[1].output_ids.at(0);

  // Alone.
  std::vector<float> alone_a, alone_b, alone_c;
  {
    Sequence sa(cuda->pool(), 64), sb(cuda->pool(), 64), sc(cuda->pool(), 64);
    ASSERT_TRUE(cuda->forward().Forward(PromptBatch(a, sa)).ok());
    ASSERT_TRUE(cuda->forward().Forward(PromptBatch(b, sb)).ok());
    absl::StatusOr<std::vector<float>> la = cuda->forward().Forward(
        {BatchToken{next_a, static_cast<int64_t>(a.size()), sa.table(), true}});
    absl::StatusOr<std::vector<float>> lb = cuda->forward().Forward(
        {BatchToken{next_b, static_cast<int64_t>(b.size()), sb.table(), true}});
    absl::StatusOr<std::vector<float>> lc = cuda->forward().Forward(PromptBatch(c, sc));
    ASSERT_TRUE(la.ok() && lb.ok() && lc.ok());
    alone_a = *la;
    alone_b = *lb;
    alone_c = *lc;
  }
  // Together: c's prompt interleaved with a's and b's decode tokens.
  Sequence sa(cuda->pool(), 64), sb(cuda->pool(), 64), sc(cuda->pool(), 64);
  ASSERT_TRUE(cuda->forward().Forward(PromptBatch(a, sa)).ok());
  ASSERT_TRUE(cuda->forward().Forward(PromptBatch(b, sb)).ok());
  std::vector<BatchToken> batch;
  const std::vector<BatchToken> c_tokens = PromptBatch(c, sc);
  batch.push_back(c_tokens[0]);
  batch.push_back(BatchToken{next_b, static_cast<int64_t>(b.size()), sb.table(), true});
  batch.push_back(c_tokens[1]);
  batch.push_back(BatchToken{next_a, static_cast<int64_t>(a.size()), sa.table(), true});
  batch.insert(batch.end(), c_tokens.begin() + 2, c_tokens.end());
  absl::StatusOr<std::vector<float>> together = cuda->forward().Forward(batch);
  ASSERT_TRUE(together.ok()) << together.status();
  ASSERT_EQ(together->size(), 3u * vocab);  // b, a, c: batch order
  const std::vector<float> got_b(together->begin(), together->begin() + vocab);
  const std::vector<float> got_a(together->begin() + vocab, together->begin() + 2 * vocab);
  const std::vector<float> got_c(together->begin() + 2 * vocab, together->end());
  // cuBLAS may pick another algorithm for another batch size: equal up to bf16 rounding.
  EXPECT_LT(MaxAbsDiff(got_a, alone_a), kLogitTolerance);
  EXPECT_LT(MaxAbsDiff(got_b, alone_b), kLogitTolerance);
  EXPECT_LT(MaxAbsDiff(got_c, alone_c), kLogitTolerance);
  EXPECT_EQ(Argmax(got_a.data(), vocab), Argmax(alone_a.data(), vocab));
  EXPECT_EQ(Argmax(got_c.data(), vocab), Argmax(alone_c.data(), vocab));
  // Swapping the roles of a and b's logits must be visible: the check can fail.
  EXPECT_GT(MaxAbsDiff(got_a, alone_b), kLogitTolerance);
}

INSTANTIATE_TEST_SUITE_P(Dtypes, CudaForwardMixedBatchTest,
                         ::testing::Values(CudaDtype::kF32, CudaDtype::kBF16),
                         [](const ::testing::TestParamInfo<CudaDtype>& info) {
                           return std::string(info.param == CudaDtype::kF32 ? "f32" : "bf16");
                         });

// Decode steps replayed from CUDA graphs give the eager steps' tokens and logits (up to the
// cuBLAS algorithm a capture may pick), and graphs are really used: one per context bucket.
TEST(CudaForwardTest, DecodeStepGraphsMatchEagerSteps) {
  std::unique_ptr<TestModel> m = LoadTestModel("models/stories260K.bin");
  ASSERT_NE(m, nullptr);
  std::unique_ptr<Backend> graphs = MakeCuda(*m, CudaDtype::kAuto, true);
  std::unique_ptr<Backend> eager = MakeCuda(*m, CudaDtype::kAuto, false);
  ASSERT_NE(graphs, nullptr);
  ASSERT_NE(eager, nullptr);
  const GoldenCase c = LoadGoldenCases().at(0);  // 5 + 181 positions: one context bucket
  const GreedyRun want = Greedy(*eager, c.prompt_ids, c.output_ids.size());
  const GreedyRun got = Greedy(*graphs, c.prompt_ids, c.output_ids.size());
  EXPECT_EQ(got.tokens, want.tokens);
  EXPECT_EQ(got.tokens, c.output_ids);
  auto* forward = dynamic_cast<cuda::CudaLlamaForward*>(&graphs->forward());
  ASSERT_NE(forward, nullptr);
  EXPECT_EQ(forward->graphs_disabled_reason(), "");
  const int64_t last_ctx = static_cast<int64_t>(c.prompt_ids.size() + c.output_ids.size());
  EXPECT_EQ(forward->graphs_captured(),
            (last_ctx - 1 + cuda::CudaLlamaForward::kDecodeCtxBucket - 1) /
                cuda::CudaLlamaForward::kDecodeCtxBucket);
  EXPECT_EQ(dynamic_cast<cuda::CudaLlamaForward*>(&eager->forward())->graphs_captured(), 0);

  // Several sequences per step, against the same steps run eagerly.
  const std::vector<GoldenCase> cases = LoadGoldenCases();
  std::vector<float> with_graphs;
  for (Backend* b : {graphs.get(), eager.get()}) {
    std::vector<std::unique_ptr<Sequence>> seqs;
    std::vector<BatchToken> step;
    for (size_t s = 0; s < 3; ++s) {
      seqs.push_back(std::make_unique<Sequence>(b->pool(), 64));
      ASSERT_TRUE(b->forward().Forward(PromptBatch(cases[s].prompt_ids, *seqs.back())).ok());
      step.push_back(BatchToken{cases[s].output_ids[0],
                                static_cast<int64_t>(cases[s].prompt_ids.size()),
                                seqs.back()->table(), true});
    }
    absl::StatusOr<std::vector<float>> logits = b->forward().Forward(step);
    ASSERT_TRUE(logits.ok()) << logits.status();
    if (b == graphs.get()) {
      with_graphs = *logits;
    } else {
      EXPECT_LT(MaxAbsDiff(with_graphs, *logits), kF32LogitTolerance);
    }
  }
}

TEST(CudaForwardTest, RejectsBadBatchesAndKeepsWorking) {
  std::unique_ptr<TestModel> m = LoadTestModel("models/stories260K.bin");
  ASSERT_NE(m, nullptr);
  std::unique_ptr<Backend> cuda = MakeCuda(*m);
  ASSERT_NE(cuda, nullptr);
  Sequence seq(cuda->pool(), kBlockSize);
  const int vocab = m->weights.config.vocab_size;
  absl::StatusOr<std::vector<float>> r =
      cuda->forward().Forward({BatchToken{vocab, 0, seq.table(), true}});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
  r = cuda->forward().Forward({BatchToken{1, kBlockSize, seq.table(), true}});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition) << r.status();
  r = cuda->forward().Forward({BatchToken{1, 0, nullptr, true}});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
  r = cuda->forward().Forward({});
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->empty());
  r = cuda->forward().Forward({BatchToken{1, 0, seq.table(), true}});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->size(), static_cast<size_t>(vocab));
}

TEST(CudaForwardTest, PoolBytesLiveOnTheDevice) {
  std::unique_ptr<TestModel> m = LoadTestModel("models/stories260K.bin");
  ASSERT_NE(m, nullptr);
  std::unique_ptr<Backend> cuda = MakeCuda(*m);
  ASSERT_NE(cuda, nullptr);
  kv::KvBlockPool& pool = cuda->pool();
  EXPECT_FALSE(pool.on_host());
  EXPECT_EQ(pool.n_total(), kPoolBlocks);
  const size_t bytes = m->layout.BlockBytes();
  std::vector<uint8_t> in(bytes), out(bytes, 0xee);
  for (size_t i = 0; i < bytes; ++i) in[i] = static_cast<uint8_t>(i * 7 + 1);
  ASSERT_TRUE(pool.WriteBlock(5, in).ok());
  ASSERT_TRUE(pool.ReadBlock(5, absl::MakeSpan(out)).ok());
  EXPECT_EQ(out, in);
  ASSERT_TRUE(pool.ReadBlock(4, absl::MakeSpan(out)).ok());
  EXPECT_EQ(out, std::vector<uint8_t>(bytes, 0)) << "a new pool is zeroed";
  ASSERT_TRUE(pool.ZeroBlock(5).ok());
  ASSERT_TRUE(pool.ReadBlock(5, absl::MakeSpan(out)).ok());
  EXPECT_EQ(out, std::vector<uint8_t>(bytes, 0));
  EXPECT_EQ(pool.ReadBlock(kPoolBlocks, absl::MakeSpan(out)).code(),
            absl::StatusCode::kOutOfRange);
  out.pop_back();
  EXPECT_EQ(pool.ReadBlock(0, absl::MakeSpan(out)).code(), absl::StatusCode::kInvalidArgument);
}

// Transfer chunks: WriteBlocks / ReadBlocks move several blocks through one device staging
// buffer (a scatter or gather kernel and one copy each way) and agree with block-by-block access.
TEST(CudaForwardTest, PoolMovesChunksOfBlocksInOneTransfer) {
  std::unique_ptr<TestModel> m = LoadTestModel("models/stories260K.bin");
  ASSERT_NE(m, nullptr);
  std::unique_ptr<Backend> cuda = MakeCuda(*m);
  ASSERT_NE(cuda, nullptr);
  kv::KvBlockPool& pool = cuda->pool();
  const size_t bytes = m->layout.BlockBytes();
  auto pattern = [bytes](int seed) {
    std::vector<uint8_t> v(bytes);
    for (size_t i = 0; i < bytes; ++i) v[i] = static_cast<uint8_t>(i * 13 + seed * 31 + 5);
    return v;
  };
  // A small chunk, then a larger one (the staging grows), ids in no particular order.
  for (const std::vector<kv::BlockId>& ids :
       {std::vector<kv::BlockId>{7, 2, 11}, std::vector<kv::BlockId>{0, 9, 3, 14, 1, 12, 6}}) {
    std::vector<std::vector<uint8_t>> data;
    for (kv::BlockId id : ids) data.push_back(pattern(id + static_cast<int>(ids.size())));
    std::vector<absl::Span<const uint8_t>> in(data.begin(), data.end());
    ASSERT_TRUE(pool.WriteBlocks(ids, in).ok());
    std::vector<uint8_t> one(bytes);
    for (size_t i = 0; i < ids.size(); ++i) {
      ASSERT_TRUE(pool.ReadBlock(ids[i], absl::MakeSpan(one)).ok());
      EXPECT_EQ(one, data[i]) << "block " << ids[i];
    }
    std::vector<kv::BlockId> reversed(ids.rbegin(), ids.rend());
    std::vector<std::vector<uint8_t>> back(ids.size(), std::vector<uint8_t>(bytes, 0xee));
    std::vector<absl::Span<uint8_t>> out;
    for (auto& b : back) out.push_back(absl::MakeSpan(b));
    ASSERT_TRUE(pool.ReadBlocks(reversed, out).ok());
    for (size_t i = 0; i < ids.size(); ++i) EXPECT_EQ(back[i], data[ids.size() - 1 - i]);
  }
  // A bad chunk copies nothing.
  std::vector<uint8_t> before(bytes), after(bytes), other = pattern(99);
  ASSERT_TRUE(pool.ReadBlock(7, absl::MakeSpan(before)).ok());
  const std::vector<absl::Span<const uint8_t>> two = {other, other};
  EXPECT_EQ(pool.WriteBlocks(std::vector<kv::BlockId>{7, 7}, two).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(pool.WriteBlocks(std::vector<kv::BlockId>{7, kPoolBlocks}, two).code(),
            absl::StatusCode::kOutOfRange);
  ASSERT_TRUE(pool.ReadBlock(7, absl::MakeSpan(after)).ok());
  EXPECT_EQ(after, before);
}

// The demo model (SmolLM2-135M, Q4_1: head_dim 64, GQA 3, tied embedding, rope base 100000) on
// the bf16 path: prefill logits near the CPU's and greedy tokens equal up to a near tie. Skipped
// where the model file is absent (the GPU bundle has no room for it; CI fetches it).
TEST(CudaForwardSmolLm2Test, Bf16PathFollowsTheCpu) {
  if (!engine::testing::SmolLm2Available()) GTEST_SKIP() << "SmolLM2 GGUF not fetched";
  absl::StatusOr<std::unique_ptr<gguf::GgufFile>> file =
      gguf::GgufFile::Open(engine::testing::SmolLm2Path());
  ASSERT_TRUE(file.ok()) << file.status();
  std::shared_ptr<const gguf::GgufFile> shared = *std::move(file);
  absl::StatusOr<model::ModelWeights> weights = model::LoadGgufLlama(shared);
  ASSERT_TRUE(weights.ok()) << weights.status();
  absl::StatusOr<std::unique_ptr<tokenizer::Tokenizer>> tok = tokenizer::LoadGgufTokenizer(*shared);
  ASSERT_TRUE(tok.ok()) << tok.status();
  absl::StatusOr<std::vector<int32_t>> prompt =
      (*tok)->Encode("The capital of France is", tokenizer::EncodeOptions());
  ASSERT_TRUE(prompt.ok()) << prompt.status();

  TestModel m;
  m.weights = *std::move(weights);
  m.layout = KvLayoutForModel(m.weights.config, kBlockSize, kernels::KvDtype::kBF16);
  std::unique_ptr<Backend> cpu = MakeCpu(m);
  std::unique_ptr<Backend> cuda = MakeCuda(m);  // auto: bf16 for a quantized file
  ASSERT_NE(cuda, nullptr);
  ASSERT_EQ(dynamic_cast<cuda::CudaLlamaForward*>(&cuda->forward())->dtype(),
            kernels::gpu::ActDtype::kBF16);
  const size_t n_new = 12;
  const GreedyRun want = Greedy(*cpu, *prompt, n_new);
  const GreedyRun got = Greedy(*cuda, *prompt, n_new);
  const float diff = MaxAbsDiff(got.first_logits, want.first_logits);
  size_t same = 0;
  while (same < n_new && got.tokens[same] == want.tokens[same]) ++same;
  std::printf("[ info ] SmolLM2 bf16: max |CUDA - CPU| prefill logit %.4f; %zu of %zu greedy "
              "tokens equal the CPU's\n", diff, same, n_new);
  EXPECT_LT(diff, kSmolLm2LogitTolerance);
  if (same < n_new) {
    EXPECT_LT(want.gaps[same], 2 * kSmolLm2LogitTolerance);
  }
}

TEST(CudaForwardTest, NeedsAPoolInDeviceMemory) {
  std::unique_ptr<TestModel> m = LoadTestModel("models/stories260K.bin");
  ASSERT_NE(m, nullptr);
  kv::KvBlockPool host_pool(m->layout, 4);
  absl::StatusOr<std::unique_ptr<cuda::CudaLlamaForward>> forward =
      cuda::CudaLlamaForward::Create(m->weights, host_pool, kernels::gpu::ActDtype::kF32);
  EXPECT_EQ(forward.status().code(), absl::StatusCode::kFailedPrecondition) << forward.status();
}

}  // namespace
}  // namespace pdserve::engine
