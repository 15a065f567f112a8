// Decode throughput of the engine's CUDA backend (engine::CreateCudaBackend, the forward pass the
// workers run) at SmolLM2-135M's shapes with random bf16 weights: each step is one
// ForwardPass::Forward call of `batch` sequences, one token each, at context 512, with the host
// work a worker pays (batch planning, metadata upload, logits copied back, stream sync); decode
// steps replayed as CUDA graphs, then eagerly (--enforce-eager), in the same run. Compare with bench/cuda/decode_step_bench.cc (the same kernels as one CUDA graph)
// and bench/cuda/torch_decode_baseline.py, printed by the same gpu-check run.
//
// Output: "RESULT engine_decode ..." lines.

#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "bench/cuda/bench_util.h"
#include "bench/cuda/smollm2_shape.h"
#include "common/engine/backend.h"
#include "common/engine/forward_pass.h"
#include "common/model/model_weights.h"
#include "kernels/cuda/device.h"

namespace pdserve::bench {
namespace {

constexpr int kCtx = 512;

// SmolLM2-135M's shapes; every matrix random bf16 (uniform in ±1/sqrt(in_features)), norms 1.
struct RandomSmolLm2 {
  std::vector<std::vector<uint16_t>> matrices;  // owns the bytes the views point to
  model::ModelWeights weights;

  RandomSmolLm2() {
    model::ModelConfig& c = weights.config;
    c.architecture = "llama";
    c.n_layers = smollm2::kLayers;
    c.dim = smollm2::kDim;
    c.hidden_dim = smollm2::kHidden;
    c.n_heads = smollm2::kHeads;
    c.n_kv_heads = smollm2::kKvHeads;
    c.head_dim = smollm2::kHeadDim;
    c.rotary_dim = smollm2::kHeadDim;
    c.vocab_size = smollm2::kVocab;
    c.context_length = smollm2::kContext;
    c.rope_base = smollm2::kRopeBase;
    c.rms_eps = smollm2::kRmsEps;
    uint64_t seed = 1;
    auto matrix = [&](int64_t rows, int64_t cols) {
      matrices.push_back(RandomBf16(static_cast<size_t>(rows * cols),
                                    1.0f / std::sqrt(static_cast<float>(cols)), seed++));
      kernels::WeightMatrix w;
      w.type = kernels::TensorType::kBF16;
      w.data = matrices.back().data();
      w.rows = rows;
      w.cols = cols;
      w.row_bytes = static_cast<size_t>(cols) * 2;
      return w;
    };
    matrices.reserve(2 + 7 * c.n_layers);
    weights.token_embedding = matrix(c.vocab_size, c.dim);
    weights.output = weights.token_embedding;
    weights.output_tied_to_embedding = true;
    weights.final_norm.assign(c.dim, 1.0f);
    const int q_dim = c.n_heads * c.head_dim;
    const int kv_dim = c.n_kv_heads * c.head_dim;
    for (int l = 0; l < c.n_layers; ++l) {
      model::LayerWeights y;
      y.attn_norm.assign(c.dim, 1.0f);
      y.ffn_norm.assign(c.dim, 1.0f);
      y.wq = matrix(q_dim, c.dim);
      y.wk = matrix(kv_dim, c.dim);
      y.wv = matrix(kv_dim, c.dim);
      y.wo = matrix(c.dim, q_dim);
      y.w_gate = matrix(c.hidden_dim, c.dim);
      y.w_up = matrix(c.hidden_dim, c.dim);
      y.w_down = matrix(c.dim, c.hidden_dim);
      weights.layers.push_back(std::move(y));
    }
  }
};

// Times decode steps at batch 1 and 32 on a fresh backend; returns the number of failures.
int TimeDecodeSteps(const RandomSmolLm2& model, const kv::KvLayout& layout, bool graphs) {
  const int block_size = layout.block_size;
  const int max_batch = 32;
  const int64_t blocks_per_seq = (kCtx + 64 + block_size - 1) / block_size;
  absl::StatusOr<engine::DeviceBackend> backend = engine::CreateCudaBackend(
      model.weights, layout, max_batch * blocks_per_seq,
      engine::CudaBackendOptions{engine::CudaDtype::kBF16, graphs});
  if (!backend.ok()) {
    std::fprintf(stderr, "FAILED CreateCudaBackend: %s\n", backend.status().ToString().c_str());
    return 1;
  }
  std::printf("INFO %s\n", backend->description.c_str());
  engine::ForwardPass& forward = *backend->forward;
  int failures = 0;
  for (int batch : {1, max_batch}) {
    std::vector<kv::BlockTable> tables(batch);
    for (kv::BlockTable& t : tables) {
      absl::StatusOr<std::vector<kv::BlockId>> ids = backend->pool->Allocate(blocks_per_seq);
      if (!ids.ok()) {
        std::fprintf(stderr, "FAILED allocating blocks: %s\n", ids.status().ToString().c_str());
        return failures + 1;
      }
      t.blocks = *std::move(ids);
    }
    // Prefill every sequence to kCtx positions, then time decode steps.
    bool ok = true;
    for (int s = 0; s < batch && ok; ++s) {
      std::vector<engine::BatchToken> prompt;
      for (int p = 0; p < kCtx; ++p) {
        prompt.push_back({(s * 131 + p * 7) % smollm2::kVocab, p, &tables[s], p == kCtx - 1});
      }
      ok = forward.Forward(prompt).ok();
    }
    const int warmup = 3;
    const int steps = 30;
    double seconds = 0;
    for (int step = 0; step < warmup + steps && ok; ++step) {
      std::vector<engine::BatchToken> tokens;
      for (int s = 0; s < batch; ++s) {
        tokens.push_back({(s + step) % smollm2::kVocab, kCtx + step, &tables[s], true});
      }
      const auto start = std::chrono::steady_clock::now();
      absl::StatusOr<std::vector<float>> logits = forward.Forward(tokens);
      const auto end = std::chrono::steady_clock::now();
      ok = logits.ok();
      if (!ok) std::fprintf(stderr, "FAILED step: %s\n", logits.status().ToString().c_str());
      if (step >= warmup) seconds += std::chrono::duration<double>(end - start).count();
    }
    for (kv::BlockTable& t : tables) (void)backend->pool->Free(t.blocks);
    if (!ok) {
      ++failures;
      continue;
    }
    const double ms = seconds * 1e3 / steps;
    std::printf("RESULT engine_decode pdserve-engine batch=%d ctx=%d ms_per_step=%.3f "
                "tok_per_s=%.0f (Forward calls, %s, logits to host)\n",
                batch, kCtx, ms, batch * 1e3 / ms, graphs ? "cuda graphs" : "eager");
  }
  return failures;
}

int Main() {
  std::string reason;
  if (!kernels::gpu::CudaDeviceAvailable(&reason)) {
    std::printf("SKIPPED: %s\n", reason.c_str());
    return 77;
  }
  const RandomSmolLm2 model;
  const kv::KvLayout layout =
      engine::KvLayoutForModel(model.weights.config, 16, kernels::KvDtype::kBF16);
  int failures = 0;
  for (const bool graphs : {true, false}) failures += TimeDecodeSteps(model, layout, graphs);
  return failures == 0 ? 0 : 1;
}

}  // namespace
}  // namespace pdserve::bench

int main() { return pdserve::bench::Main(); }
