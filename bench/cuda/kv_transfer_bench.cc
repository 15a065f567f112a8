// Moving a transfer chunk of KV blocks between a GPU pool and host memory, as a prefill worker
// reads the blocks it ships and a decode worker writes the blocks it receives: one
// KvBlockPool::ReadBlocks / WriteBlocks call (a gather or scatter kernel over device staging and
// one pinned copy) against the block-by-block ReadBlock / WriteBlock loop it replaced, beside a
// plain pinned cudaMemcpy of the same bytes (the bus's ceiling), in one run. SmolLM2-135M's KV
// layout in bf16 (368,640 bytes a block of 16 tokens); block ids scattered over the pool.
//
// Output: "RESULT kv_transfer ..." lines, host wall-clock (what the worker waits for).

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "bench/cuda/bench_util.h"
#include "bench/cuda/smollm2_shape.h"
#include "common/engine/cuda/device_kv_storage.h"
#include "common/kv/kv_block_pool.h"
#include "kernels/cuda/device.h"

namespace pdserve::bench {
namespace {

constexpr int64_t kPoolBlocks = 2048;
constexpr int kReps = 30;

using Clock = std::chrono::steady_clock;

// Median milliseconds of kReps runs of `run` (which returns false on failure: -1 then).
template <typename F>
double MedianMs(F run) {
  std::vector<double> ms;
  for (int i = 0; i < kReps + 2; ++i) {
    const Clock::time_point start = Clock::now();
    if (!run()) return -1;
    const double elapsed = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
    if (i >= 2) ms.push_back(elapsed);  // the first two warm up (staging allocation)
  }
  std::nth_element(ms.begin(), ms.begin() + ms.size() / 2, ms.end());
  return ms[ms.size() / 2];
}

double GBps(size_t bytes, double ms) { return ms > 0 ? bytes / (ms * 1e6) : 0; }

int Main() {
  std::string reason;
  if (!kernels::gpu::CudaDeviceAvailable(&reason)) {
    std::printf("SKIPPED: %s\n", reason.c_str());
    return 77;
  }
  kv::KvLayout layout;
  layout.n_layers = smollm2::kLayers;
  layout.n_kv_heads = smollm2::kKvHeads;
  layout.head_dim = smollm2::kHeadDim;
  layout.dtype = kernels::KvDtype::kBF16;
  const size_t block_bytes = layout.BlockBytes();
  absl::StatusOr<std::unique_ptr<kv::KvBlockStorage>> storage =
      engine::cuda::MakeDeviceKvStorage(kPoolBlocks * block_bytes);
  if (!storage.ok()) {
    std::fprintf(stderr, "FAILED %s\n", std::string(storage.status().message()).c_str());
    return 1;
  }
  absl::StatusOr<std::unique_ptr<kv::KvBlockPool>> pool =
      kv::KvBlockPool::Create(layout, kPoolBlocks, *std::move(storage));
  if (!pool.ok()) {
    std::fprintf(stderr, "FAILED %s\n", std::string(pool.status().message()).c_str());
    return 1;
  }
  std::printf("INFO %s; pool %lld blocks of %zu bytes (%s)\n",
              kernels::gpu::CurrentDeviceDescription().c_str(),
              static_cast<long long>(kPoolBlocks), block_bytes, layout.DebugString().c_str());

  std::vector<kv::BlockId> all(kPoolBlocks);
  std::iota(all.begin(), all.end(), 0);
  std::shuffle(all.begin(), all.end(), std::mt19937(7));
  int failures = 0;
  for (const int chunk : {1, 4, 16, 64}) {
    const std::vector<kv::BlockId> ids(all.begin(), all.begin() + chunk);
    std::vector<std::vector<uint8_t>> host(chunk, std::vector<uint8_t>(block_bytes, 1));
    std::vector<absl::Span<uint8_t>> out;
    std::vector<absl::Span<const uint8_t>> in;
    for (auto& h : host) {
      out.push_back(absl::MakeSpan(h));
      in.push_back(h);
    }
    const size_t bytes = chunk * block_bytes;

    // The bus's ceiling: one pinned copy of the chunk's bytes each way.
    void* pinned = nullptr;
    void* device_bytes = nullptr;
    BENCH_CHECK(cudaMallocHost(&pinned, bytes));
    BENCH_CHECK(cudaMalloc(&device_bytes, bytes));
    const double d2h_ms = MedianMs([&] {
      return cudaMemcpy(pinned, device_bytes, bytes, cudaMemcpyDeviceToHost) == cudaSuccess;
    });
    const double h2d_ms = MedianMs([&] {
      return cudaMemcpy(device_bytes, pinned, bytes, cudaMemcpyHostToDevice) == cudaSuccess;
    });
    cudaFree(device_bytes);
    cudaFreeHost(pinned);

    const double read_loop_ms = MedianMs([&] {
      for (int i = 0; i < chunk; ++i) {
        if (!(*pool)->ReadBlock(ids[i], out[i]).ok()) return false;
      }
      return true;
    });
    const double read_chunk_ms = MedianMs([&] { return (*pool)->ReadBlocks(ids, out).ok(); });
    const double write_loop_ms = MedianMs([&] {
      for (int i = 0; i < chunk; ++i) {
        if (!(*pool)->WriteBlock(ids[i], in[i]).ok()) return false;
      }
      return true;
    });
    const double write_chunk_ms = MedianMs([&] { return (*pool)->WriteBlocks(ids, in).ok(); });
    for (double ms : {d2h_ms, h2d_ms, read_loop_ms, read_chunk_ms, write_loop_ms, write_chunk_ms}) {
      if (ms < 0) ++failures;
    }
    std::printf(
        "RESULT kv_transfer read  chunk_blocks=%d MB=%.2f block_by_block_GBps=%.1f "
        "chunked_GBps=%.1f speedup=%.2f pinned_copy_GBps=%.1f chunked_fraction_of_copy=%.2f\n",
        chunk, bytes / 1e6, GBps(bytes, read_loop_ms), GBps(bytes, read_chunk_ms),
        read_loop_ms / read_chunk_ms, GBps(bytes, d2h_ms), d2h_ms / read_chunk_ms);
    std::printf(
        "RESULT kv_transfer write chunk_blocks=%d MB=%.2f block_by_block_GBps=%.1f "
        "chunked_GBps=%.1f speedup=%.2f pinned_copy_GBps=%.1f chunked_fraction_of_copy=%.2f\n",
        chunk, bytes / 1e6, GBps(bytes, write_loop_ms), GBps(bytes, write_chunk_ms),
        write_loop_ms / write_chunk_ms, GBps(bytes, h2d_ms), h2d_ms / write_chunk_ms);
  }
  return failures == 0 ? 0 : 1;
}

}  // namespace
}  // namespace pdserve::bench

int main() { return pdserve::bench::Main(); }
