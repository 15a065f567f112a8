// PrefillScheduler without gRPC: a fake KV send stream that records chunks, fails or blocks on
// demand.

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

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/engine/engine.h"
#include "common/kv_transfer/transfer_token.h"
#include "gtest/gtest.h"
#include "tests/prefill_node/prefill_test_jobs.h"
#include "tests/support/stories_engine.h"
#include "tests/support/wait_for.h"

namespace pdserve::prefill {
namespace {

using test_support::WaitFor;

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;


// Shared state of every stream a FakeSinks opens.
class FakeSinks final : public kv_transfer::KvSendStreamFactory {
 public:
  absl::StatusOr<std::unique_ptr<kv_transfer::KvSendStream>> Open(
      const kv_transfer::Handoff& handoff, const kv_transfer::SenderHello& hello,
      absl::Time deadline) override;

  std::mutex mutex;
  std::condition_variable cv;
  // By request id: the headers of each SendBlocks call.
  std::map<std::string, std::vector<std::vector<kv_transfer::KvBlockHeader>>> chunks;
  std::map<std::string, int32_t> first_tokens;
  int fail_at_chunk = -1;       // SendBlocks of this chunk index fails with DataLoss
  bool hold_finish = false;     // Finish waits until released or cancelled
  int n_cancelled = 0;
  int n_open = 0;
  absl::Time open_deadline = absl::InfinitePast();  // the last Open's

  void Release() {
    std::lock_guard<std::mutex> lock(mutex);
    hold_finish = false;
    cv.notify_all();
  }
};

class FakeSink final : public kv_transfer::KvSendStream {
 public:
  FakeSink(FakeSinks& shared, std::string id) : shared_(shared), id_(std::move(id)) {}
  ~FakeSink() override {
    std::lock_guard<std::mutex> lock(shared_.mutex);
    --shared_.n_open;
  }
  absl::string_view transport() const override { return "fake"; }
  absl::Status SendBlocks(absl::Span<const kv_transfer::OutgoingBlock> blocks) override {
    std::lock_guard<std::mutex> lock(shared_.mutex);
    if (cancelled_) return absl::CancelledError("sink cancelled");
    const int index = static_cast<int>(shared_.chunks[id_].size());
    std::vector<kv_transfer::KvBlockHeader> headers;
    for (const kv_transfer::OutgoingBlock& block : blocks) {
      EXPECT_EQ(block.header.checksum, kv_transfer::BlockChecksum(block.bytes));
      headers.push_back(block.header);
    }
    shared_.chunks[id_].push_back(std::move(headers));
    if (index == shared_.fail_at_chunk) return absl::DataLossError("decode worker at fake: bad");
    return absl::OkStatus();
  }
  absl::Status Finish(int32_t first_token) override {
    std::unique_lock<std::mutex> lock(shared_.mutex);
    shared_.cv.wait_for(lock, std::chrono::seconds(20),
                        [&] { return !shared_.hold_finish || cancelled_; });
    shared_.first_tokens[id_] = first_token;
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
  const std::string id_;
  bool cancelled_ = false;  // guarded by shared_.mutex
};

absl::StatusOr<std::unique_ptr<kv_transfer::KvSendStream>> FakeSinks::Open(
    const kv_transfer::Handoff& handoff, const kv_transfer::SenderHello& hello,
    absl::Time deadline) {
  std::lock_guard<std::mutex> lock(mutex);
  ++n_open;
  open_deadline = deadline;
  return std::make_unique<FakeSink>(*this, hello.request_id);
}

PrefillJob Job(engine::Engine& engine, const std::string& id, int n_tokens) {
  return testing::ValidJob(engine, id, n_tokens);
}

TEST(PrefillSchedulerTest, SinkErrorFailsTheRequestAndFreesItsBlocks) {
  std::unique_ptr<engine::Engine> engine = test_support::LoadStoriesEngine(0);
  ASSERT_NE(engine, nullptr);
  FakeSinks sinks;
  sinks.fail_at_chunk = 1;
  PrefillScheduler scheduler(*engine, sinks, {});
  const absl::StatusOr<PrefillOutcome> result = scheduler.Prefill(Job(*engine, "r", 150));
  EXPECT_EQ(result.status().code(), absl::StatusCode::kDataLoss) << result.status();
  EXPECT_EQ(sinks.chunks["r"].size(), 2u);  // stopped at the failing chunk
  EXPECT_EQ(engine->kv_pool().n_free(), engine->kv_pool().n_total());
  EXPECT_EQ(sinks.n_open, 0);
}

TEST(PrefillSchedulerTest, SendsEveryBlockInOrderWithTheFirstToken) {
  std::unique_ptr<engine::Engine> engine = test_support::LoadStoriesEngine(0);
  ASSERT_NE(engine, nullptr);
  FakeSinks sinks;
  PrefillScheduler scheduler(*engine, sinks, {});
  const absl::StatusOr<PrefillOutcome> result = scheduler.Prefill(Job(*engine, "all", 150));
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->kv_blocks_sent, 10);  // ceil(150 / 16)
  EXPECT_EQ(result->transfer.transport, "fake");
  EXPECT_EQ(result->transfer.blocks, 10);
  EXPECT_EQ(result->transfer.bytes,
            10 * static_cast<int64_t>(engine->kv_pool().layout().BlockBytes()));
  int64_t next = 0;
  for (const auto& chunk : sinks.chunks["all"]) {
    for (const kv_transfer::KvBlockHeader& header : chunk) {
      EXPECT_EQ(header.index, next++);
      EXPECT_EQ(header.n_tokens, header.index == 9 ? 6 : 16);
    }
  }
  EXPECT_EQ(next, 10);
  EXPECT_EQ(sinks.first_tokens["all"], result->first_token);
}

TEST(PrefillSchedulerTest, HandoffOfAnotherLayoutOrModelIsRefusedBeforeAnyCompute) {
  std::unique_ptr<engine::Engine> engine = test_support::LoadStoriesEngine(0);
  ASSERT_NE(engine, nullptr);
  FakeSinks sinks;
  PrefillSchedulerOptions options;
  options.model_fingerprint = std::string(32, 'a');
  PrefillScheduler scheduler(*engine, sinks, options);
  PrefillJob other_block_size = Job(*engine, "bs", 40);
  other_block_size.handoff.layout.block_size = 32;
  absl::StatusOr<PrefillOutcome> r = scheduler.Prefill(other_block_size);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition) << r.status();
  EXPECT_NE(r.status().message().find("block_size=32"), std::string::npos) << r.status();
  PrefillJob other_model = Job(*engine, "model", 40);
  other_model.handoff.model_fingerprint = std::string(32, 'b');
  r = scheduler.Prefill(other_model);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition) << r.status();
  EXPECT_NE(r.status().message().find(std::string(32, 'b')), std::string::npos) << r.status();
  PrefillJob few_targets = Job(*engine, "few", 40);
  few_targets.handoff.target_blocks.pop_back();
  EXPECT_EQ(scheduler.Prefill(few_targets).status().code(), absl::StatusCode::kInvalidArgument);
  PrefillJob short_token = Job(*engine, "token", 40);
  short_token.handoff.transfer_token = "x";
  EXPECT_EQ(scheduler.Prefill(short_token).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(sinks.chunks.empty());
}

TEST(PrefillSchedulerTest, PromptLargerThanThePoolIsResourceExhausted) {
  std::unique_ptr<engine::Engine> engine = test_support::LoadStoriesEngine(64);  // 4 blocks
  ASSERT_NE(engine, nullptr);
  FakeSinks sinks;
  PrefillScheduler scheduler(*engine, sinks, {});
  const absl::StatusOr<PrefillOutcome> result = scheduler.Prefill(Job(*engine, "big", 100));
  EXPECT_EQ(result.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(result.status().message().find("needs 7 KV blocks"), std::string::npos)
      << result.status();
  EXPECT_TRUE(scheduler.Prefill(Job(*engine, "fits", 64)).ok());
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
  auto first = std::async(std::launch::async, [&] { return scheduler.Prefill(Job(*engine, "first", 100)); });
  ASSERT_TRUE(WaitFor([&] { return engine->kv_pool().n_free() == 1; }));
  auto second = std::async(std::launch::async, [&] { return scheduler.Prefill(Job(*engine, "second", 100)); });
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
  PrefillJob job = Job(*engine, "gone", 150);
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

TEST(PrefillSchedulerTest, TheJobsDeadlineBoundsTheHandoff) {
  std::unique_ptr<engine::Engine> engine = test_support::LoadStoriesEngine(0);
  ASSERT_NE(engine, nullptr);
  FakeSinks sinks;
  PrefillScheduler scheduler(*engine, sinks, {});
  PrefillJob job = Job(*engine, "bounded", 40);
  job.handoff.lease_max = absl::ZeroDuration();  // no lease: the job's deadline alone
  job.deadline = absl::Now() + absl::Hours(1);
  const absl::Time deadline = job.deadline;
  const absl::StatusOr<PrefillOutcome> result = scheduler.Prefill(std::move(job));
  ASSERT_TRUE(result.ok()) << result.status();
  std::lock_guard<std::mutex> lock(sinks.mutex);
  EXPECT_EQ(sinks.open_deadline, deadline);
}

TEST(PrefillSchedulerTest, PassedDeadlineFailsBeforeAnyHandoff) {
  std::unique_ptr<engine::Engine> engine = test_support::LoadStoriesEngine(0);
  ASSERT_NE(engine, nullptr);
  FakeSinks sinks;
  PrefillScheduler scheduler(*engine, sinks, {});
  PrefillJob job = Job(*engine, "late", 40);
  job.deadline = absl::Now() - absl::Seconds(1);
  std::promise<absl::StatusOr<PrefillOutcome>> done;
  std::future<absl::StatusOr<PrefillOutcome>> outcome = done.get_future();
  ASSERT_TRUE(scheduler
                  .StartPrefill(std::move(job),
                                [&done](absl::StatusOr<PrefillOutcome> r) {
                                  done.set_value(std::move(r));
                                })
                  .ok());
  ASSERT_EQ(outcome.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  EXPECT_EQ(outcome.get().status().code(), absl::StatusCode::kDeadlineExceeded);
  std::lock_guard<std::mutex> lock(sinks.mutex);
  EXPECT_EQ(sinks.open_deadline, absl::InfinitePast());  // never opened
  EXPECT_TRUE(sinks.chunks["late"].empty());
  EXPECT_EQ(engine->kv_pool().n_free(), engine->kv_pool().n_total());
}

TEST(PrefillSchedulerTest, CallerPastItsDeadlineStopsItsRunningRequest) {
  std::unique_ptr<engine::Engine> engine = test_support::LoadStoriesEngine(0);
  ASSERT_NE(engine, nullptr);
  FakeSinks sinks;
  sinks.hold_finish = true;
  PrefillScheduler scheduler(*engine, sinks, {});
  PrefillJob job = Job(*engine, "slow", 150);
  job.deadline = absl::Now() + absl::Seconds(1);
  auto result = std::async(std::launch::async, [&] { return scheduler.Prefill(job); });
  ASSERT_EQ(result.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  EXPECT_EQ(result.get().status().code(), absl::StatusCode::kDeadlineExceeded);
  std::lock_guard<std::mutex> lock(sinks.mutex);
  EXPECT_EQ(sinks.n_cancelled, 1);  // its handoff, held open in Finish
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
  auto running = std::async(std::launch::async, [&] { return scheduler.Prefill(Job(*engine, "a", 20)); });
  ASSERT_TRUE(WaitFor([&] { return scheduler.load().active_sequences == 1; }));
  auto queued = std::async(std::launch::async, [&] { return scheduler.Prefill(Job(*engine, "b", 20)); });
  ASSERT_TRUE(WaitFor([&] { return scheduler.load().queue_length == 1; }));
  scheduler.Shutdown();
  ASSERT_EQ(queued.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  ASSERT_EQ(running.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  EXPECT_EQ(queued.get().status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(running.get().status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(scheduler.Prefill(Job(*engine, "c", 20)).status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(engine->kv_pool().n_free(), engine->kv_pool().n_total());
}

}  // namespace
}  // namespace pdserve::prefill
