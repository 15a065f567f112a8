// pdserve-kernels-bench: MatMul throughput by type, variant, thread count and n_tokens.
// Not a test; prints one line per case: the best of several runs, as weight GB/s and GFLOP/s.
//
//   pdserve-kernels-bench [rows cols [types [n_tokens]]]
//     default: SmolLM2-135M's FFN shapes (1536 x 576, 576 x 1536), types q4_1,q8_0,q4_K,q6_K,f16,f32,
//     n_tokens 1 and 64; types is a comma-separated list of ggml names, n_tokens one count.

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/matmul.h"
#include "tests/kernels/kernel_test_util.h"

namespace pdserve::kernels {
namespace {

double ThreadCpuSeconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

// The best wall time per call, and the calling thread's CPU time per call in that same run (on a
// busy machine the CPU time of a 1-thread run is the steadier number).
struct Timing {
  double wall = 1e30;
  double cpu = 0;
};

Timing BestSeconds(const WeightMatrix& w, const std::vector<float>& x, int64_t n_tokens,
                   std::vector<float>& y, ThreadPool& pool, Isa isa) {
  const double bytes = static_cast<double>(w.rows) * w.row_bytes;
  const int runs = static_cast<int>(std::clamp(2e8 / (bytes + 1e6 * n_tokens), 5.0, 2000.0));
  Timing best;
  for (int rep = 0; rep < 5; ++rep) {
    const auto start = std::chrono::steady_clock::now();
    const double cpu_start = ThreadCpuSeconds();
    for (int r = 0; r < runs; ++r) MatMul(w, x.data(), n_tokens, y.data(), pool, isa);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (s / runs < best.wall) best = {s / runs, (ThreadCpuSeconds() - cpu_start) / runs};
  }
  return best;
}

void Bench(TensorType type, int64_t rows, int64_t cols, const std::vector<int64_t>& token_counts) {
  std::mt19937 rng(1);
  const TensorTypeInfo& info = GetTensorTypeInfo(type);
  if (cols % info.block_elems != 0) return;  // e.g. k-quants need cols % 256 == 0
  const std::vector<uint8_t> bytes = testing::RandomTensor(type, rows * cols, rng);
  const WeightMatrix w{type, bytes.data(), rows, cols, RowBytes(info, cols)};
  for (int64_t n_tokens : token_counts) {
    const std::vector<float> x = testing::RandomFloats(n_tokens * cols, rng);
    std::vector<float> y(n_tokens * rows);
    for (Isa isa : testing::RunnableIsas()) {
      for (int n_threads : {1, 2}) {
        ThreadPool pool(n_threads);
        const Timing t = BestSeconds(w, x, n_tokens, y, pool, isa);
        const double s = t.wall;
        std::printf("%-5s %5lldx%-5lld tokens %3lld %-6s threads %d: %8.1f us (cpu %8.1f us) "
                    "%6.2f GB/s %7.2f GFLOP/s\n",
                    info.name, static_cast<long long>(rows), static_cast<long long>(cols),
                    static_cast<long long>(n_tokens), IsaName(isa).c_str(), n_threads, s * 1e6,
                    t.cpu * 1e6, rows * w.row_bytes / s / 1e9, 2.0 * rows * cols * n_tokens / s / 1e9);
      }
    }
  }
}

}  // namespace
}  // namespace pdserve::kernels

int main(int argc, char** argv) {
  using pdserve::kernels::TensorType;
  std::vector<std::pair<int64_t, int64_t>> shapes = {{1536, 576}, {576, 1536}};
  if (argc >= 3) shapes = {{std::atoll(argv[1]), std::atoll(argv[2])}};
  std::string types = argc >= 4 ? argv[3] : "q4_1,q8_0,q4_K,q6_K,f16,f32";
  std::vector<int64_t> token_counts = {1, 64};
  if (argc >= 5) token_counts = {std::atoll(argv[4])};
  for (auto [rows, cols] : shapes) {
    for (TensorType type : pdserve::kernels::testing::kAllTypes) {
      const std::string name = pdserve::kernels::GetTensorTypeInfo(type).name;
      if (("," + types + ",").find("," + name + ",") == std::string::npos) continue;
      pdserve::kernels::Bench(type, rows, cols, token_counts);
    }
  }
  return 0;
}
