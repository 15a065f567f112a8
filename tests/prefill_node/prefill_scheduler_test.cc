// PrefillScheduler without gRPC: a fake KvSink that records chunks, fails or blocks on demand.

#include "prefill_node/prefill_scheduler.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/engine/engine.h"
#include "gtest/gtest.h"
#include "tests/support/stories_engine.h"
#include "tests/support/wait_for.h"

namespace pdserve::prefill {
namespace {

using test_support::WaitFor;

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

std::vector<int32_t> MakePrompt(int n) {
  std::vector<int32_t> ids;
  for (int i = 0; i < n; ++i) ids.push_back(1 + (i * 13 + 7) % 500);
  return ids;
}

// Shared state of every sink a FakeSinks opens.
class FakeSinks final : public KvSinkFactory {
 public:
  std::unique_ptr<KvSink> Open(const std::string& address,
                               std::chrono::system_clock::time_point) override;

  std::mutex mutex;
  std::condition_variable cv;
  std::map<std::string, std::vector<v1::KvChunk>> chunks;  // by request id
  int fail_at_chunk = -1;       // Send of this chunk index fails with DataLoss
  bool hold_finish = false;     // Finish waits until released or cancelled
  int n_cancelled = 0;
  int n_open = 0;

  void Release() {
    std::lock_guard<std::mutex> lock(mutex);
    hold_finish = false;
    cv.notify_all();
  }
};

class FakeSink final : public KvSink {
 public:
  explicit FakeSink(FakeSinks& shared) : shared_(shared) {}
  ~FakeSink() override {
    std::lock_guard<std::mutex> lock(shared_.mutex);
    --shared_.n_open;
  }
  absl::Status Send(const v1::KvChunk& chunk) override {
    std::lock_guard<std::mutex> lock(shared_.mutex);
    if (cancelled_) return absl::CancelledError("sink cancelled");
    if (id_.empty()) id_ = chunk.request_id();
    const int index = static_cast<int>(shared_.chunks[id_].size());
    shared_.chunks[id_].push_back(chunk);
    if (index == shared_.fail_at_chunk) return absl::DataLossError("decode worker at fake: bad");
    return absl::OkStatus();
  }
  absl::Status Finish() override {
    std::unique_lock<std::mutex> lock(shared_.mutex);
    shared_.cv.wait_for(lock, std::chrono::seconds(20),
                        [&] { return !shared_.hold_finish || cancelled_; });
    return cancelled_ ? absl::CancelledError("sink cancelled") : absl::OkStatus();
  }
  void Cancel() override {
    std::lock_guard<std::mutex> lock(shared_.mutex);
    if (!cancelled_) ++shared_.n_cancelled;
    cancelled_ = true;
    shared_.cv.notify_all();
  }

 private:
  FakeSinks& shared_;
  std::string id_;
  bool cancelled_ = false;  // guarded by shared_.mutex
};

std::unique_ptr<KvSink> FakeSinks::Open(const std::string&, std::chrono::system_clock::time_point) {
  std::lock_guard<std::mutex> lock(mutex);
  ++n_open;
  return std::make_unique<FakeSink>(*this);
}

PrefillJob Job(const std::string& id, int n_tokens) {
  PrefillJob job;
  job.request_id = id;
  job.prompt_ids = MakePrompt(n_tokens);
  job.decode_address = "fake:1";
  return job;
}

TEST(PrefillSchedulerTest, SinkErrorFailsTheRequestAndFreesItsBlocks) {
  std::unique_ptr<engine::Engine> engine = test_support::LoadStoriesEngine(0);
  ASSERT_NE(engine, nullptr);
  FakeSinks sinks;
  sinks.fail_at_chunk = 1;
  PrefillScheduler scheduler(*engine, sinks, {});
  const absl::StatusOr<PrefillOutcome> result = scheduler.Prefill(Job("r", 150));
  EXPECT_EQ(result.status().code(), absl::StatusCode::kDataLoss) << result.status();
  EXPECT_EQ(sinks.chunks["r"].size(), 2u);  // stopped at the failing chunk
  EXPECT_EQ(engine->kv_pool().n_free(), engine->kv_pool().n_total());
  EXPECT_EQ(sinks.n_open, 0);
}

TEST(PrefillSchedulerTest, PromptLargerThanThePoolIsResourceExhausted) {
  std::unique_ptr<engine::Engine> engine = test_support::LoadStoriesEngine(64);  // 4 blocks
  ASSERT_NE(engine, nullptr);
  FakeSinks sinks;
  PrefillScheduler scheduler(*engine, sinks, {});
  const absl::StatusOr<PrefillOutcome> result = scheduler.Prefill(Job("big", 100));
  EXPECT_EQ(result.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(result.status().message().find("needs 7 KV blocks"), std::string::npos)
      << result.status();
  EXPECT_TRUE(scheduler.Prefill(Job("fits", 64)).ok());
}

TEST(PrefillSchedulerTest, ExecutorWaitsForBlocksHeldByAnotherRequest) {
  // 8 blocks: one 100-token prompt.
  std::unique_ptr<engine::Engine> engine = test_support::LoadStoriesEngine(128);
  ASSERT_NE(engine, nullptr);
  FakeSinks sinks;
  sinks.hold_finish = true;
  PrefillSchedulerOptions options;
  options.n_executors = 2;
  PrefillScheduler scheduler(*engine, sinks, options);
  auto first = std::async(std::launch::async, [&] { return scheduler.Prefill(Job("first", 100)); });
  ASSERT_TRUE(WaitFor([&] { return engine->kv_pool().n_free() == 1; }));
  auto second = std::async(std::launch::async, [&] { return scheduler.Prefill(Job("second", 100)); });
  ASSERT_TRUE(WaitFor([&] { return scheduler.load().active_sequences == 2; }));
  std::this_thread::sleep_for(milliseconds(100));
  EXPECT_EQ(engine->kv_pool().n_free(), 1);  // the second waits, it does not fail
  EXPECT_EQ(second.wait_for(milliseconds(0)), std::future_status::timeout);
  sinks.Release();
  ASSERT_EQ(first.wait_for(std::chrono::seconds(20)), std::future_status::ready);
  ASSERT_EQ(second.wait_for(std::chrono::seconds(20)), std::future_status::ready);
  EXPECT_TRUE(first.get().ok());
  const absl::StatusOr<PrefillOutcome> r = second.get();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->kv_blocks_sent, 7);
  EXPECT_EQ(engine->kv_pool().n_free(), engine->kv_pool().n_total());
}

TEST(PrefillSchedulerTest, CancelledCallerStopsItsRunningRequest) {
  std::unique_ptr<engine::Engine> engine = test_support::LoadStoriesEngine(0);
  ASSERT_NE(engine, nullptr);
  FakeSinks sinks;
  sinks.hold_finish = true;
  PrefillScheduler scheduler(*engine, sinks, {});
  std::atomic<bool> cancelled{false};
  PrefillJob job = Job("gone", 150);
  job.is_cancelled = [&] { return cancelled.load(); };
  auto result = std::async(std::launch::async, [&] { return scheduler.Prefill(job); });
  ASSERT_TRUE(WaitFor([&] {
    std::lock_guard<std::mutex> lock(sinks.mutex);
    return sinks.chunks["gone"].size() == 3;  // all sent, held in Finish
  }));
  cancelled = true;
  ASSERT_EQ(result.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  EXPECT_EQ(result.get().status().code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(sinks.n_cancelled, 1);
  EXPECT_EQ(engine->kv_pool().n_free(), engine->kv_pool().n_total());
}

TEST(PrefillSchedulerTest, ShutdownFailsQueuedRequestsWithUnavailable) {
  std::unique_ptr<engine::Engine> engine = test_support::LoadStoriesEngine(0);
  ASSERT_NE(engine, nullptr);
  FakeSinks sinks;
  sinks.hold_finish = true;
  PrefillSchedulerOptions options;
  options.n_executors = 1;
  PrefillScheduler scheduler(*engine, sinks, options);
  auto running = std::async(std::launch::async, [&] { return scheduler.Prefill(Job("a", 20)); });
  ASSERT_TRUE(WaitFor([&] { return scheduler.load().active_sequences == 1; }));
  auto queued = std::async(std::launch::async, [&] { return scheduler.Prefill(Job("b", 20)); });
  ASSERT_TRUE(WaitFor([&] { return scheduler.load().queue_length == 1; }));
  scheduler.Shutdown();
  ASSERT_EQ(queued.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  ASSERT_EQ(running.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  EXPECT_EQ(queued.get().status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(running.get().status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(scheduler.Prefill(Job("c", 20)).status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(engine->kv_pool().n_free(), engine->kv_pool().n_total());
}

}  // namespace
}  // namespace pdserve::prefill
