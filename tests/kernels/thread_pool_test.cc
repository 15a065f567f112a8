#include "kernels/cpu/thread_pool.h"

#include <atomic>
#include <cstdint>
#include <mutex>
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
      EXPECT_LE(ranges.size(), static_cast<size_t>(n_threads));
    }
  }
}

TEST(ThreadPoolTest, UsesSeveralThreads) {
  ThreadPool pool(3);
  std::mutex mu;
  std::vector<std::thread::id> ids;
  pool.ParallelFor(3, [&](int64_t, int64_t) {
    std::lock_guard<std::mutex> lock(mu);
    ids.push_back(std::this_thread::get_id());
  });
  ASSERT_EQ(ids.size(), 3u);
  EXPECT_NE(ids[0], ids[1]);
  EXPECT_NE(ids[1], ids[2]);
  EXPECT_NE(ids[0], ids[2]);
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
