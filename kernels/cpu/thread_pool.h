#pragma once
// A fixed pool of worker threads for the CPU kernels. ParallelFor splits [0, n) into contiguous
// ranges; kernels split by output rows, so each output element is computed by exactly one thread
// with the same arithmetic whatever the thread count.

#include <cstdint>
#include <functional>
#include <memory>

namespace pdserve::kernels {

class ThreadPool {
 public:
  // n_threads >= 1; the calling thread is one of them.
  explicit ThreadPool(int n_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int n_threads() const;

  // Calls fn(begin, end) over disjoint ranges covering [0, n) and returns when all are done.
  // Not reentrant: fn must not call ParallelFor on the same pool. One caller at a time.
  void ParallelFor(int64_t n, const std::function<void(int64_t begin, int64_t end)>& fn);

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace pdserve::kernels
