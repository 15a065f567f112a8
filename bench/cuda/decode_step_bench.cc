// Decode throughput of a whole decoder step at SmolLM2-135M's shapes (30 layers, dim 576, 9 heads,
// 3 kv heads, head_dim 64, hidden 1536, vocab 49152, tied embedding), random bf16 weights, bf16
// paged KV (block 16), f32 residual stream: embedding, then per layer RMSNorm, fused QKV GEMM,
// RoPE, K/V store, paged-attention decode, output GEMM, residual, RMSNorm, fused gate|up GEMM,
// SwiGLU, down GEMM, residual; then the final norm and the logits GEMM (f32).
// Every sequence of the batch holds `ctx` cached positions and decodes position ctx.
// Timed as a CUDA graph of one step (and eagerly, to show the launch overhead). Compare with
// bench/cuda/torch_decode_baseline.py, which runs the same shapes in PyTorch.
//
// Output: "RESULT decode_step ..." lines; "INFO ..." lines.

#include <cublas_v2.h>

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "bench/cuda/bench_util.h"
#include "bench/cuda/smollm2_shape.h"
#include "kernels/cuda/dequantize.h"
#include "kernels/cuda/device.h"
#include "kernels/cuda/elementwise.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/kv_blocks.h"
#include "kernels/cuda/paged_attention.h"

namespace pdserve::bench {
namespace {

using kernels::KvDtype;
using kernels::TensorType;
using namespace kernels::gpu;

using namespace smollm2;
constexpr int kBlockSize = 16;
constexpr int kQkv = (kHeads + 2 * kKvHeads) * kHeadDim;  // 960
constexpr float kEps = kRmsEps;

// Device memory released at scope exit.
class Arena {
 public:
  ~Arena() {
    for (void* p : ptrs_) cudaFree(p);
  }
  template <typename T>
  T* Alloc(size_t n) {
    void* p = nullptr;
    if (cudaMalloc(&p, n * sizeof(T)) != cudaSuccess) {
      cudaGetLastError();
      return nullptr;
    }
    ptrs_.push_back(p);
    return static_cast<T*>(p);
  }
  // Random bf16 (uniform in [-a, a)) uploaded from the host.
  __nv_bfloat16* RandomBf16Device(size_t n, float a, uint64_t seed) {
    auto* d = Alloc<__nv_bfloat16>(n);
    if (d == nullptr) return nullptr;
    const std::vector<uint16_t> h = RandomBf16(n, a, seed);
    if (cudaMemcpy(d, h.data(), n * 2, cudaMemcpyHostToDevice) != cudaSuccess) return nullptr;
    return d;
  }
  float* ConstantF32Device(size_t n, float v) {
    auto* d = Alloc<float>(n);
    if (d == nullptr) return nullptr;
    const std::vector<float> h(n, v);
    if (cudaMemcpy(d, h.data(), n * 4, cudaMemcpyHostToDevice) != cudaSuccess) return nullptr;
    return d;
  }

 private:
  std::vector<void*> ptrs_;
};

struct Layer {
  float* attn_norm;       // (dim)
  __nv_bfloat16* wqkv;    // (960, dim): q | k | v rows
  __nv_bfloat16* wo;      // (dim, dim)
  float* ffn_norm;        // (dim)
  __nv_bfloat16* wgu;     // (2 * hidden, dim): gate | up rows
  __nv_bfloat16* wdown;   // (dim, hidden)
};

struct Model {
  __nv_bfloat16* embedding;  // (vocab, dim), also the output matrix
  float* final_norm;
  std::vector<Layer> layers;
};

bool MakeModel(Arena& arena, Model& m) {
  uint64_t seed = 1;
  // Scales keep activations O(1) through 30 random layers.
  m.embedding = arena.RandomBf16Device(size_t{kVocab} * kDim, 1.0f, seed++);
  m.final_norm = arena.ConstantF32Device(kDim, 1.0f);
  if (m.embedding == nullptr || m.final_norm == nullptr) return false;
  const float s_dim = 1.0f / std::sqrt(float(kDim));
  const float s_hidden = 1.0f / std::sqrt(float(kHidden));
  for (int l = 0; l < kLayers; ++l) {
    Layer y;
    y.attn_norm = arena.ConstantF32Device(kDim, 1.0f);
    y.ffn_norm = arena.ConstantF32Device(kDim, 1.0f);
    y.wqkv = arena.RandomBf16Device(size_t{kQkv} * kDim, s_dim, seed++);
    y.wo = arena.RandomBf16Device(size_t{kDim} * kDim, s_dim, seed++);
    y.wgu = arena.RandomBf16Device(size_t{2 * kHidden} * kDim, s_dim, seed++);
    y.wdown = arena.RandomBf16Device(size_t{kDim} * kHidden, s_hidden, seed++);
    if (!y.attn_norm || !y.ffn_norm || !y.wqkv || !y.wo || !y.wgu || !y.wdown) return false;
    m.layers.push_back(y);
  }
  return true;
}

// The per-batch state of a step: token ids, positions, the paged KV and the activations.
struct Batch {
  int n = 0;        // sequences
  int ctx = 0;      // cached positions per sequence; the step decodes position ctx
  int32_t* tokens;  // (n)
  int32_t* positions;
  int64_t* slots;
  int32_t* ctx_lens;  // ctx + 1: attention covers the new position too
  int32_t* tables;    // (n, table_stride)
  int64_t table_stride;
  uint8_t* pool;
  int64_t n_blocks;
  PagedDecodePlan plan;
  void* workspace;
  float* x;               // (n, dim) residual stream
  __nv_bfloat16* h;       // (n, dim) normed
  __nv_bfloat16* qkv;     // (n, 960)
  __nv_bfloat16* attn;    // (n, dim)
  __nv_bfloat16* proj;    // (n, dim) output of wo / wdown
  __nv_bfloat16* gu;      // (n, 2 * hidden)
  __nv_bfloat16* act;     // (n, hidden)
  float* logits;          // (n, vocab)
};

bool MakeBatch(Arena& arena, int n, int ctx, int n_sms, Batch& b) {
  b.n = n;
  b.ctx = ctx;
  b.table_stride = (ctx + 1 + kBlockSize - 1) / kBlockSize;
  b.n_blocks = b.table_stride * n;
  const PagedKvView probe = MakePagedKvView(nullptr, b.n_blocks, kLayers, 0, kBlockSize, kKvHeads,
                                            kHeadDim, KvDtype::kBF16);
  b.pool = arena.Alloc<uint8_t>(probe.block_bytes * b.n_blocks);
  if (b.pool == nullptr || cudaMemset(b.pool, 0x3c, probe.block_bytes * b.n_blocks) != cudaSuccess) {
    return false;
  }
  std::vector<int32_t> tokens(n), positions(n, ctx), ctx_lens(n, ctx + 1), tables(n * b.table_stride);
  std::vector<int64_t> slots(n);
  for (int i = 0; i < n; ++i) {
    tokens[i] = (i * 7919 + 13) % kVocab;
    for (int64_t j = 0; j < b.table_stride; ++j) {
      tables[i * b.table_stride + j] = static_cast<int32_t>(j * n + i);  // interleaved sequences
    }
    slots[i] = int64_t{tables[i * b.table_stride + ctx / kBlockSize]} * kBlockSize + ctx % kBlockSize;
  }
  b.tokens = arena.Alloc<int32_t>(n);
  b.positions = arena.Alloc<int32_t>(n);
  b.ctx_lens = arena.Alloc<int32_t>(n);
  b.tables = arena.Alloc<int32_t>(tables.size());
  b.slots = arena.Alloc<int64_t>(n);
  b.plan = PlanPagedAttentionDecode(PagedDecodeShape{n, kHeads, kKvHeads, kHeadDim, ctx + 1},
                                    n_sms);
  b.workspace = b.plan.workspace_bytes ? arena.Alloc<uint8_t>(b.plan.workspace_bytes) : nullptr;
  if (b.workspace != nullptr && cudaMemset(b.workspace, 0, b.plan.workspace_bytes) != cudaSuccess) {
    return false;  // the attention workspace must start zeroed
  }
  b.x = arena.Alloc<float>(size_t{1} * n * kDim);
  b.h = arena.Alloc<__nv_bfloat16>(size_t{1} * n * kDim);
  b.qkv = arena.Alloc<__nv_bfloat16>(size_t{1} * n * kQkv);
  b.attn = arena.Alloc<__nv_bfloat16>(size_t{1} * n * kDim);
  b.proj = arena.Alloc<__nv_bfloat16>(size_t{1} * n * kDim);
  b.gu = arena.Alloc<__nv_bfloat16>(size_t{1} * n * 2 * kHidden);
  b.act = arena.Alloc<__nv_bfloat16>(size_t{1} * n * kHidden);
  b.logits = arena.Alloc<float>(size_t{1} * n * kVocab);
  if (!b.tokens || !b.positions || !b.ctx_lens || !b.tables || !b.slots || !b.x || !b.h ||
      !b.qkv || !b.attn || !b.proj || !b.gu || !b.act || !b.logits ||
      (b.plan.workspace_bytes && !b.workspace)) {
    return false;
  }
  return cudaMemcpy(b.tokens, tokens.data(), n * 4, cudaMemcpyHostToDevice) == cudaSuccess &&
         cudaMemcpy(b.positions, positions.data(), n * 4, cudaMemcpyHostToDevice) == cudaSuccess &&
         cudaMemcpy(b.ctx_lens, ctx_lens.data(), n * 4, cudaMemcpyHostToDevice) == cudaSuccess &&
         cudaMemcpy(b.tables, tables.data(), tables.size() * 4, cudaMemcpyHostToDevice) ==
             cudaSuccess &&
         cudaMemcpy(b.slots, slots.data(), n * 8, cudaMemcpyHostToDevice) == cudaSuccess;
}

// One decoder step for the batch, queued on `stream`. Returns 1 (after printing) on an error.
int Step(const Model& m, Batch& b, cublasHandle_t cublas, cudaStream_t stream) {
  const int n = b.n;
  BENCH_CHECK(EmbeddingLookup(TensorType::kBF16, m.embedding, kVocab, kDim, b.tokens, n,
                              ActDtype::kF32, b.x, stream));
  const float scale = 1.0f / std::sqrt(float(kHeadDim));
  for (int l = 0; l < kLayers; ++l) {
    const Layer& y = m.layers[l];
    const PagedKvView kv = MakePagedKvView(b.pool, b.n_blocks, kLayers, l, kBlockSize, kKvHeads,
                                           kHeadDim, KvDtype::kBF16);
    // h (n, dim) = rmsnorm(x)
    BENCH_CHECK(RmsNorm(b.x, ActDtype::kF32, y.attn_norm, n, kDim, kEps, b.h, ActDtype::kBF16,
                        stream));
    // qkv (n, 960) = h · Wqkvᵀ; rotate q and k (adjacent: 12 heads), store k and v.
    BENCH_CHECK(GemmBf16(cublas, b.h, n, y.wqkv, kQkv, kDim, b.qkv, ActDtype::kBF16, stream));
    BENCH_CHECK(RopeInterleaved(b.qkv, ActDtype::kBF16, n, kQkv, kHeads + kKvHeads, kHeadDim,
                                kHeadDim, b.positions, kRopeBase, stream));
    const __nv_bfloat16* k = b.qkv + kHeads * kHeadDim;
    const __nv_bfloat16* v = k + kKvHeads * kHeadDim;
    BENCH_CHECK(StoreKv(k, v, ActDtype::kBF16, kQkv, kQkv, n, b.slots, kv, stream));
    // attn (n, dim) = attention of q over positions [0, ctx]
    BENCH_CHECK(PagedAttentionDecode(b.qkv, kQkv,
                                     PagedDecodeShape{n, kHeads, kKvHeads, kHeadDim, b.ctx + 1},
                                     kv, b.tables, b.table_stride, b.ctx_lens, scale, b.plan,
                                     b.workspace, b.plan.workspace_bytes, b.attn, kDim, stream));
    // x += attn · Woᵀ
    BENCH_CHECK(GemmBf16(cublas, b.attn, n, y.wo, kDim, kDim, b.proj, ActDtype::kBF16, stream));
    BENCH_CHECK(AddInPlace(b.x, ActDtype::kF32, b.proj, ActDtype::kBF16, int64_t{n} * kDim, stream));
    // x += (silu(h · Wgateᵀ) * (h · Wupᵀ)) · Wdownᵀ, h = rmsnorm(x)
    BENCH_CHECK(RmsNorm(b.x, ActDtype::kF32, y.ffn_norm, n, kDim, kEps, b.h, ActDtype::kBF16,
                        stream));
    BENCH_CHECK(GemmBf16(cublas, b.h, n, y.wgu, 2 * kHidden, kDim, b.gu, ActDtype::kBF16, stream));
    BENCH_CHECK(SwiGlu(b.gu, b.gu + kHidden, 2 * kHidden, n, kHidden, b.act, kHidden,
                       ActDtype::kBF16, stream));
    BENCH_CHECK(GemmBf16(cublas, b.act, n, y.wdown, kDim, kHidden, b.proj, ActDtype::kBF16, stream));
    BENCH_CHECK(AddInPlace(b.x, ActDtype::kF32, b.proj, ActDtype::kBF16, int64_t{n} * kDim, stream));
  }
  BENCH_CHECK(RmsNorm(b.x, ActDtype::kF32, m.final_norm, n, kDim, kEps, b.h, ActDtype::kBF16, stream));
  BENCH_CHECK(GemmBf16(cublas, b.h, n, m.embedding, kVocab, kDim, b.logits, ActDtype::kF32, stream));
  return 0;
}

// Milliseconds per step: eager (launch by launch) and replayed as a CUDA graph (negative when
// the graph could not be built).
int TimeSteps(const Model& m, Batch& b, cublasHandle_t cublas, cudaStream_t stream,
              double* eager_ms, double* graph_ms) {
  EventTimer timer;
  for (int i = 0; i < 2; ++i) {
    if (Step(m, b, cublas, stream) != 0) return 1;
  }
  BENCH_CHECK(cudaStreamSynchronize(stream));
  const int iters = 10;
  BENCH_CHECK(timer.Start(stream));
  for (int i = 0; i < iters; ++i) {
    if (Step(m, b, cublas, stream) != 0) return 1;
  }
  BENCH_CHECK(timer.Stop(stream));
  *eager_ms = timer.Ms() / iters;

  *graph_ms = -1;
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  if (cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal) != cudaSuccess) {
    std::printf("INFO graph capture unavailable: %s\n", cudaGetErrorString(cudaGetLastError()));
    return 0;
  }
  const int step_rc = Step(m, b, cublas, stream);
  const cudaError_t end = cudaStreamEndCapture(stream, &graph);
  if (step_rc != 0 || end != cudaSuccess ||
      cudaGraphInstantiate(&exec, graph, 0) != cudaSuccess) {
    std::printf("INFO graph capture failed (%s); eager timing only\n", cudaGetErrorString(end));
    cudaGetLastError();
    if (graph != nullptr) cudaGraphDestroy(graph);
    return 0;
  }
  BENCH_CHECK(cudaGraphLaunch(exec, stream));
  BENCH_CHECK(cudaStreamSynchronize(stream));
  const int graph_iters = 30;
  BENCH_CHECK(timer.Start(stream));
  for (int i = 0; i < graph_iters; ++i) BENCH_CHECK(cudaGraphLaunch(exec, stream));
  BENCH_CHECK(timer.Stop(stream));
  *graph_ms = timer.Ms() / graph_iters;
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  return 0;
}

int Main() {
  std::string reason;
  if (!CudaDeviceAvailable(&reason)) {
    std::printf("SKIPPED: %s\n", reason.c_str());
    return 77;
  }
  std::printf("INFO device %s\n", CurrentDeviceDescription().c_str());
  cudaStream_t stream = nullptr;
  BENCH_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  cublasHandle_t cublas = nullptr;
  if (cublasCreate(&cublas) != CUBLAS_STATUS_SUCCESS) {
    std::fprintf(stderr, "FAILED cublasCreate\n");
    return 1;
  }
  // A fixed cuBLAS workspace: no allocation inside graph capture.
  Arena arena;
  void* cublas_ws = arena.Alloc<uint8_t>(size_t{32} << 20);
  // Bound to the stream first: binding later would drop the workspace.
  if (cublas_ws == nullptr || cublasSetStream(cublas, stream) != CUBLAS_STATUS_SUCCESS ||
      cublasSetWorkspace(cublas, cublas_ws, size_t{32} << 20) != CUBLAS_STATUS_SUCCESS) {
    std::fprintf(stderr, "FAILED cuBLAS workspace\n");
    return 1;
  }
  Model model;
  if (!MakeModel(arena, model)) {
    std::fprintf(stderr, "FAILED to allocate the model\n");
    return 1;
  }
  const int n_sms = CurrentDeviceMultiprocessors();
  const struct {
    int batch, ctx;
  } configs[] = {{1, 512}, {32, 512}, {32, 4096}};
  int failures = 0;
  for (const auto& c : configs) {
    Arena batch_arena;
    Batch b;
    if (!MakeBatch(batch_arena, c.batch, c.ctx, n_sms, b)) {
      std::fprintf(stderr, "FAILED to allocate batch=%d ctx=%d\n", c.batch, c.ctx);
      ++failures;
      continue;
    }
    double eager_ms = 0;
    double graph_ms = 0;
    if (TimeSteps(model, b, cublas, stream, &eager_ms, &graph_ms) != 0) {
      ++failures;
      cudaGetLastError();
      continue;
    }
    // Sanity: the logits of the last step are finite.
    std::vector<float> logits(kVocab);
    cudaMemcpy(logits.data(), b.logits, kVocab * 4, cudaMemcpyDeviceToHost);
    int n_bad = 0;
    for (float v : logits) n_bad += !std::isfinite(v);
    if (n_bad) {
      std::fprintf(stderr, "FAILED %d non-finite logits (batch=%d ctx=%d)\n", n_bad, c.batch, c.ctx);
      ++failures;
    }
    const double best = graph_ms > 0 ? graph_ms : eager_ms;
    std::printf("RESULT decode_step pdserve batch=%d ctx=%d ms_per_step=%.3f tok_per_s=%.0f "
                "(%s; eager %.3f ms/step)\n",
                c.batch, c.ctx, best, c.batch * 1e3 / best, graph_ms > 0 ? "cuda graph" : "eager",
                eager_ms);
  }
  cublasDestroy(cublas);
  cudaStreamDestroy(stream);
  return failures == 0 ? 0 : 1;
}

}  // namespace
}  // namespace pdserve::bench

int main() { return pdserve::bench::Main(); }
