#include "kernels/cpu/thread_pool.h"

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <thread>
#include <vector>

namespace pdserve::kernels {
namespace {

// A decode step issues hundreds of short ParallelFor calls; a worker that goes to sleep between
// them costs a futex wake-up (tens of microseconds) per call. So waiters spin for a while (tens
// of microseconds) before they block.
constexpr int kSpinIterations = 4096;

// Each job is cut into this many chunks per thread, claimed dynamically: a thread that is late
// (not scheduled, on a busy machine) leaves its share to the others instead of stalling the call.
constexpr int kChunksPerThread = 4;

inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#else
  std::this_thread::yield();
#endif
}

// Waits until `value` differs from `old`; returns the new value.
template <typename T>
T WaitWhileEquals(const std::atomic<T>& value, T old) {
  for (int i = 0; i < kSpinIterations; ++i) {
    const T now = value.load(std::memory_order_acquire);
    if (now != old) return now;
    CpuRelax();
  }
  T now;
  while ((now = value.load(std::memory_order_acquire)) == old) value.wait(old, std::memory_order_acquire);
  return now;
}

}  // namespace

struct ThreadPool::State {
  int n_threads = 1;
  int n_chunks = 1;
  std::vector<std::thread> workers;

  // Bumped by the caller to publish a job or the stop request; idle workers wait on it.
  std::atomic<uint32_t> generation{0};
  // (job id << 32) | next unclaimed chunk. A successful claim of chunk c of job j proves that job
  // j is still running (its caller waits for chunk c), so fn and n below are stable while read.
  std::atomic<uint64_t> work{0};
  // Chunks of the current job finished; the caller waits for n_chunks.
  std::atomic<uint32_t> done{0};
  bool stop = false;
  const std::function<void(int64_t, int64_t)>* fn = nullptr;
  int64_t n = 0;

  // Claims and runs chunks of the current job until none is left.
  void RunChunks() {
    uint64_t w = work.load(std::memory_order_acquire);
    while (static_cast<uint32_t>(w) < static_cast<uint32_t>(n_chunks)) {
      if (!work.compare_exchange_weak(w, w + 1, std::memory_order_acq_rel, std::memory_order_acquire)) {
        continue;
      }
      const int64_t c = static_cast<uint32_t>(w);
      const int64_t begin = n * c / n_chunks;
      const int64_t end = n * (c + 1) / n_chunks;
      if (begin < end) (*fn)(begin, end);
      if (done.fetch_add(1, std::memory_order_acq_rel) + 1 == static_cast<uint32_t>(n_chunks)) {
        done.notify_one();
      }
      w = work.load(std::memory_order_acquire);
    }
  }

  void WorkerLoop() {
    uint32_t seen = 0;
    while (true) {
      seen = WaitWhileEquals(generation, seen);
      if (stop) return;
      RunChunks();
    }
  }
};

ThreadPool::ThreadPool(int n_threads) : state_(std::make_unique<State>()) {
  if (n_threads < 1) std::abort();  // programmer error: the header requires n_threads >= 1
  state_->n_threads = n_threads;
  state_->n_chunks = n_threads * kChunksPerThread;
  // The first job gets id 1: chunk claims of job 0 (none) are already exhausted.
  state_->work.store(static_cast<uint64_t>(state_->n_chunks), std::memory_order_relaxed);
  state_->workers.reserve(n_threads - 1);
  for (int i = 1; i < n_threads; ++i) {
    state_->workers.emplace_back([this] { state_->WorkerLoop(); });
  }
}

ThreadPool::~ThreadPool() {
  state_->stop = true;
  state_->generation.fetch_add(1, std::memory_order_release);
  state_->generation.notify_all();
  for (std::thread& worker : state_->workers) worker.join();
}

int ThreadPool::n_threads() const { return state_->n_threads; }

void ThreadPool::ParallelFor(int64_t n, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  State& s = *state_;
  if (s.n_threads == 1 || n == 1) {
    fn(0, n);
    return;
  }
  // No chunk of the previous job is claimable (work's chunk index is n_chunks), so these plain
  // writes race with no reader; the release below publishes them.
  s.fn = &fn;
  s.n = n;
  s.done.store(0, std::memory_order_relaxed);
  const uint64_t job = (s.work.load(std::memory_order_relaxed) >> 32) + 1;
  s.work.store(job << 32, std::memory_order_release);
  s.generation.fetch_add(1, std::memory_order_release);
  s.generation.notify_all();
  s.RunChunks();
  uint32_t finished = s.done.load(std::memory_order_acquire);
  while (finished != static_cast<uint32_t>(s.n_chunks)) finished = WaitWhileEquals(s.done, finished);
}

}  // namespace pdserve::kernels
