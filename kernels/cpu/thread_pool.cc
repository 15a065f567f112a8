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
// them costs a futex wake-up (tens of microseconds) per call. So waiters spin for about this many
// pause instructions (tens of microseconds) before they block.
constexpr int kSpinIterations = 4096;

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
  std::vector<std::thread> workers;

  // Bumped by the caller to publish a job (fn, n) or the stop request; workers wait on it.
  std::atomic<uint32_t> generation{0};
  // Workers still running the current job; the caller waits for 0.
  std::atomic<uint32_t> pending{0};
  bool stop = false;
  const std::function<void(int64_t, int64_t)>* fn = nullptr;
  int64_t n = 0;

  void RunShare(int index) const {
    const int64_t begin = n * index / n_threads;
    const int64_t end = n * (index + 1) / n_threads;
    if (begin < end) (*fn)(begin, end);
  }

  void WorkerLoop(int index) {
    uint32_t seen = 0;
    while (true) {
      seen = WaitWhileEquals(generation, seen);
      if (stop) return;
      RunShare(index);
      if (pending.fetch_sub(1, std::memory_order_acq_rel) == 1) pending.notify_one();
    }
  }
};

ThreadPool::ThreadPool(int n_threads) : state_(std::make_unique<State>()) {
  if (n_threads < 1) std::abort();  // programmer error: the header requires n_threads >= 1
  state_->n_threads = n_threads;
  state_->workers.reserve(n_threads - 1);
  for (int i = 1; i < n_threads; ++i) {
    state_->workers.emplace_back([this, i] { state_->WorkerLoop(i); });
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
  s.fn = &fn;
  s.n = n;
  s.pending.store(static_cast<uint32_t>(s.n_threads - 1), std::memory_order_relaxed);
  s.generation.fetch_add(1, std::memory_order_release);
  s.generation.notify_all();
  s.RunShare(0);
  uint32_t left = s.pending.load(std::memory_order_acquire);
  while (left != 0) left = WaitWhileEquals(s.pending, left);
}

}  // namespace pdserve::kernels
