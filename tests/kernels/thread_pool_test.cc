#include "kernels/cpu/thread_pool.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <set>
#include <thread>
#include <utility>
#include <vector>

#include "gtest/gtest.h"

namespace pdserve::kernels {
namespace {

TEST(ThreadPoolTest, RangesAreDisjointAndCoverEverything) {
  for (int n_threads : {1, 2, 3, 5}) {
    ThreadPool pool(n_threads);
    EXPECT_EQ(pool.n_threads(), n_threads);
    for (int64_t n : {0, 1, 2, 3, 4, 7, 100, 1001}) {
      std::vector<int> hits(static_cast<size_t>(n), 0);
      std::mutex mu;
      std::vector<std::pair<int64_t, int64_t>> ranges;
      pool.ParallelFor(n, [&](int64_t begin, int64_t end) {
        ASSERT_LT(begin, end);
        for (int64_t i = begin; i < end; ++i) ++hits[i];
        std::lock_guard<std::mutex> lock(mu);
        ranges.emplace_back(begin, end);
      });
      for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[i], 1) << n_threads << " " << n << " " << i;
      EXPECT_LE(ranges.size(), static_cast<size_t>(std::max<int64_t>(n, 1)));
    }
  }
}

// Every thread of the pool takes part: each range waits (up to a generous deadline) until three
// distinct threads have started one, which only happens if both workers run ranges.
TEST(ThreadPoolTest, UsesEveryThread) {
  ThreadPool pool(3);
  std::mutex mu;
  std::set<std::thread::id> ids;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  pool.ParallelFor(300, [&](int64_t, int64_t) {
    {
      std::lock_guard<std::mutex> lock(mu);
      ids.insert(std::this_thread::get_id());
    }
    while (std::chrono::steady_clock::now() < deadline) {
      {
        std::lock_guard<std::mutex> lock(mu);
        if (ids.size() == 3) return;
      }
      std::this_thread::yield();
    }
  });
  EXPECT_EQ(ids.size(), 3u);
}

// A thread that is slow (here: blocked until the call's other ranges are done) does not stop the
// others from finishing the rest of the job.
TEST(ThreadPoolTest, OtherThreadsTakeOverTheWork) {
  ThreadPool pool(2);
  std::atomic<int64_t> covered{0};
  std::atomic<bool> first{true};
  const int64_t n = 1000;
  pool.ParallelFor(n, [&](int64_t begin, int64_t end) {
    if (first.exchange(false)) {
      // The first range claimed waits until every other range is done.
      while (covered.load() != n - (end - begin)) std::this_thread::yield();
    }
    covered += end - begin;
  });
  EXPECT_EQ(covered.load(), n);
}

// Many short jobs back to back, as a decode step issues them; every job sees all its work done
// before ParallelFor returns.
TEST(ThreadPoolTest, ManyShortJobs) {
  ThreadPool pool(2);
  std::atomic<int64_t> total{0};
  for (int job = 0; job < 3000; ++job) {
    pool.ParallelFor(4, [&](int64_t begin, int64_t end) { total += end - begin; });
    ASSERT_EQ(total.load(), 4 * (job + 1));
  }
}

}  // namespace
}  // namespace pdserve::kernels
