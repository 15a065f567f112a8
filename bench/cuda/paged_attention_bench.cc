// Paged-attention decode bandwidth: bytes of K and V read per second, next to the device's
// device-to-device copy bandwidth measured in the same run (bytes read + written per second).
// The headline: batch 32, context 4096, SmolLM2's heads (9 q, 3 kv, head_dim 64), block size 16,
// bf16 and f16 KV; goal >= 70% of the copy bandwidth.
//
// The pool has SmolLM2's 30 layers and each timed call reads another layer, so the 100 MB of K/V
// one call reads is not in the 50 MB L2 from the call before. Block tables are random
// permutations of the pool's blocks.
//
// Output: "RESULT ..." lines (copied into the GPU check's summary) and "INFO ..." lines.

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "bench/cuda/bench_util.h"
#include "bench/cuda/smollm2_shape.h"
#include "kernels/cuda/device.h"
#include "kernels/cuda/paged_attention.h"

namespace pdserve::bench {
namespace {

using kernels::KvDtype;
using namespace kernels::gpu;

using smollm2::kHeadDim;
using smollm2::kHeads;
using smollm2::kKvHeads;
using smollm2::kLayers;
constexpr int kBlockSize = 16;

struct Config {
  int batch;
  int ctx;
  KvDtype dtype;
  int split_tokens;  // 0: planner
  bool headline;
};

struct Shared {
  uint8_t* pool = nullptr;  // kLayers layers, n_blocks blocks, sized for 2-byte elements
  int64_t n_blocks = 0;
  double copy_gbps = 0;
  int n_sms = 0;
  cudaStream_t stream = nullptr;
};

// Runs one configuration; prints its line. Returns 0, or 1 on a CUDA error.
int RunConfig(const Config& c, Shared& sh) {
  const int eb = c.dtype == KvDtype::kF32 ? 4 : 2;
  const int64_t blocks_per_seq = (c.ctx + kBlockSize - 1) / kBlockSize;
  if (blocks_per_seq * c.batch > sh.n_blocks || eb != 2) {
    std::printf("INFO skipped batch=%d ctx=%d: pool too small\n", c.batch, c.ctx);
    return 0;
  }
  std::mt19937 gen(42);
  std::vector<int32_t> ids(sh.n_blocks);
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), gen);
  std::vector<int32_t> tables(c.batch * blocks_per_seq);
  std::copy(ids.begin(), ids.begin() + tables.size(), tables.begin());
  std::vector<int32_t> ctx_lens(c.batch, c.ctx);
  const std::vector<uint16_t> q = RandomBf16(static_cast<size_t>(c.batch) * kHeads * kHeadDim, 1.0f, 7);

  int32_t* d_tables = nullptr;
  int32_t* d_ctx = nullptr;
  void* d_q = nullptr;
  void* d_out = nullptr;
  void* d_ws = nullptr;
  const PagedDecodeShape shape{c.batch, kHeads, kKvHeads, kHeadDim, c.ctx};
  const PagedDecodePlan plan = PlanPagedAttentionDecode(shape, sh.n_sms, c.split_tokens);
  int rc = 1;
  do {
    if (cudaMalloc(reinterpret_cast<void**>(&d_tables), tables.size() * 4) != cudaSuccess) break;
    if (cudaMalloc(reinterpret_cast<void**>(&d_ctx), ctx_lens.size() * 4) != cudaSuccess) break;
    if (cudaMalloc(&d_q, q.size() * 2) != cudaSuccess) break;
    if (cudaMalloc(&d_out, q.size() * 2) != cudaSuccess) break;
    if (plan.workspace_bytes > 0 && (cudaMalloc(&d_ws, plan.workspace_bytes) != cudaSuccess ||
                                     cudaMemset(d_ws, 0, plan.workspace_bytes) != cudaSuccess)) {
      break;  // (the workspace must start zeroed)
    }
    cudaMemcpy(d_tables, tables.data(), tables.size() * 4, cudaMemcpyHostToDevice);
    cudaMemcpy(d_ctx, ctx_lens.data(), ctx_lens.size() * 4, cudaMemcpyHostToDevice);
    cudaMemcpy(d_q, q.data(), q.size() * 2, cudaMemcpyHostToDevice);

    auto launch = [&](int layer) {
      const PagedKvView kv = MakePagedKvView(sh.pool, sh.n_blocks, kLayers, layer, kBlockSize,
                                             kKvHeads, kHeadDim, c.dtype);
      return PagedAttentionDecode(static_cast<const __nv_bfloat16*>(d_q), kHeads * kHeadDim,
                                  shape, kv, d_tables, blocks_per_seq, d_ctx,
                                  1.0f / std::sqrt(float(kHeadDim)), plan, d_ws,
                                  plan.workspace_bytes, static_cast<__nv_bfloat16*>(d_out),
                                  kHeads * kHeadDim, sh.stream);
    };
    // Warm-up long enough for the clocks to settle, then the median of several timed runs, so
    // the first configuration measured is not penalised by a cold GPU.
    bool ok = true;
    for (int i = 0; i < 30 && ok; ++i) ok = launch(i % kLayers) == cudaSuccess;
    if (!ok || cudaStreamSynchronize(sh.stream) != cudaSuccess) {
      std::fprintf(stderr, "FAILED paged-attention launch: %s [%s]\n",
                   cudaGetErrorString(cudaGetLastError()), LastArgumentError());
      break;
    }
    const int iters = 60;
    std::vector<float> run_ms;
    for (int run = 0; run < 5 && ok; ++run) {
      EventTimer timer;
      timer.Start(sh.stream);
      for (int i = 0; i < iters && ok; ++i) ok = launch(i % kLayers) == cudaSuccess;
      timer.Stop(sh.stream);
      run_ms.push_back(timer.Ms());
    }
    std::sort(run_ms.begin(), run_ms.end());
    const float ms = run_ms.empty() ? 0.0f : run_ms[run_ms.size() / 2];
    if (!ok || ms <= 0) {
      std::fprintf(stderr, "FAILED timing: %s\n", cudaGetErrorString(cudaGetLastError()));
      break;
    }
    const double us = ms * 1e3 / iters;
    const double bytes = 2.0 * c.batch * double(c.ctx) * kKvHeads * kHeadDim * eb;
    const double gbps = bytes / (us * 1e-6) / 1e9;
    const char* dtype = c.dtype == KvDtype::kBF16 ? "bf16" : "f16";
    std::printf("%s paged_decode kv=%s batch=%d ctx=%d heads=%d/%d head_dim=%d block=%d "
                "split=%dx%d time_us=%.1f kv_MB=%.1f GBps=%.0f fraction_of_copy=%.2f%s\n",
                c.headline || c.split_tokens == 0 ? "RESULT" : "INFO", dtype, c.batch, c.ctx,
                kHeads, kKvHeads, kHeadDim, kBlockSize, plan.split_tokens, plan.n_splits, us,
                bytes / 1e6, gbps, gbps / sh.copy_gbps,
                c.headline ? (gbps / sh.copy_gbps >= 0.70 ? " goal>=0.70:MET" : " goal>=0.70:MISSED")
                           : "");
    rc = 0;
  } while (false);
  if (rc != 0) std::fprintf(stderr, "FAILED config batch=%d ctx=%d\n", c.batch, c.ctx);
  cudaFree(d_tables);
  cudaFree(d_ctx);
  cudaFree(d_q);
  cudaFree(d_out);
  cudaFree(d_ws);
  return rc;
}

int Main() {
  std::string reason;
  if (!CudaDeviceAvailable(&reason)) {
    std::printf("SKIPPED: %s\n", reason.c_str());
    return 77;
  }
  std::printf("INFO device %s\n", CurrentDeviceDescription().c_str());
  Shared sh;
  sh.n_sms = CurrentDeviceMultiprocessors();
  BENCH_CHECK(cudaStreamCreateWithFlags(&sh.stream, cudaStreamNonBlocking));
  sh.copy_gbps = CopyBandwidthGBps(size_t{1} << 30, sh.stream);
  if (sh.copy_gbps <= 0) {
    std::fprintf(stderr, "FAILED copy bandwidth measurement\n");
    return 1;
  }
  std::printf("RESULT copy_d2d GBps=%.0f (1 GiB cudaMemcpy, bytes read + written)\n", sh.copy_gbps);

  // 8192 blocks: batch 32 at 4096 positions, or batch 8 at 16384.
  sh.n_blocks = 8192;
  const PagedKvView probe = MakePagedKvView(nullptr, sh.n_blocks, kLayers, 0, kBlockSize, kKvHeads,
                                            kHeadDim, KvDtype::kBF16);
  const size_t pool_bytes = probe.block_bytes * sh.n_blocks;
  BENCH_CHECK(cudaMalloc(reinterpret_cast<void**>(&sh.pool), pool_bytes));
  BENCH_CHECK(cudaMemset(sh.pool, 0x3c, pool_bytes));  // 0x3c3c: a small positive bf16/f16
  std::printf("INFO pool %.2f GB (%d layers x %lld blocks)\n", pool_bytes / 1e9, kLayers,
              static_cast<long long>(sh.n_blocks));

  const Config configs[] = {
      {32, 4096, KvDtype::kBF16, 0, true},   {32, 4096, KvDtype::kF16, 0, true},
      // Forced split lengths around the planner's choice (one wave of thread blocks).
      {32, 4096, KvDtype::kBF16, 128, false}, {32, 4096, KvDtype::kBF16, 256, false},
      {32, 4096, KvDtype::kBF16, 384, false}, {32, 4096, KvDtype::kBF16, 512, false},
      {32, 4096, KvDtype::kBF16, 768, false}, {32, 4096, KvDtype::kBF16, 1024, false},
      {32, 4096, KvDtype::kF16, 512, false},
      {1, 4096, KvDtype::kBF16, 0, false},   {32, 1024, KvDtype::kBF16, 0, false},
      {8, 16384, KvDtype::kBF16, 0, false},  {32, 4000, KvDtype::kBF16, 0, false},
      {64, 2048, KvDtype::kBF16, 0, false},  {128, 1024, KvDtype::kBF16, 0, false},
  };
  int failures = 0;
  for (const Config& c : configs) failures += RunConfig(c, sh);
  cudaFree(sh.pool);
  cudaStreamDestroy(sh.stream);
  return failures == 0 ? 0 : 1;
}

}  // namespace
}  // namespace pdserve::bench

int main() { return pdserve::bench::Main(); }
