// DecodeScheduler as plain C++ (no gRPC): reservation (all or nothing, never-fits, waiting
// bounded by deadline and cancellation), KV received through transfer-layer sessions
// (verification, pins, leases), immediate ends, block accounting, and decode steps that go on
// while KV is written.

#include "decode_node/decode_scheduler.h"

#include <atomic>
#include <future>
#include <map>
#include <thread>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/engine/cpu_llama_forward.h"
#include "common/kv_transfer/receive_session.h"
#include "gtest/gtest.h"
#include "kernels/cpu/thread_pool.h"
#include "tests/decode_node/decode_test_support.h"
#include "tests/support/stories_engine.h"

namespace pdserve::decode {
namespace {

class DecodeSchedulerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // 64 tokens: 4 blocks of 16.
    engine_ = test_support::LoadStoriesEngine(64);
    ASSERT_NE(engine_, nullptr);
    ASSERT_EQ(engine_->kv_pool().n_total(), 4);
    scheduler_ = std::make_unique<DecodeScheduler>(
        engine_->config(), engine_->kv_pool(), engine_->forward(),
        engine_->tokenizer().end_of_generation_ids(), SchedulerOptions{});
  }
  void TearDown() override {
    EXPECT_EQ(engine_->kv_pool().n_free(), 4);
    scheduler_.reset();
  }

  static DecodeSpec Spec(const std::string& id, int n_prompt, int max_tokens) {
    DecodeSpec spec;
    spec.request_id = id;
    spec.prompt_ids.assign(n_prompt, 5);
    spec.max_tokens = max_tokens;
    return spec;
  }
  // Reserves and remembers the transfer token under the request id; the number of blocks.
  absl::StatusOr<int64_t> Reserve(const DecodeSpec& spec,
                                  absl::Duration timeout = absl::Seconds(5),
                                  std::function<bool()> cancelled = [] { return false; }) {
    absl::StatusOr<Reservation> r = scheduler_->Reserve(spec, absl::Now() + timeout, cancelled);
    if (!r.ok()) return r.status();
    tokens_[spec.request_id] = r->transfer_token;
    return r->n_blocks;
  }
  // Receives blocks for request `id` as the gRPC transport does: a receive session opened with
  // the reservation's token.
  absl::Status InstallKv(const std::string& id,
                         absl::Span<const kv_transfer::IncomingBlock> blocks) {
    absl::StatusOr<kv_transfer::KvReceiveSession> session =
        kv_transfer::KvReceiveSession::Open(*scheduler_, engine_->kv_pool(), tokens_[id]);
    if (!session.ok()) return session.status();
    return session->ReceiveCopies(blocks);
  }
  absl::Status CompleteKv(const std::string& id, int32_t first_token) {
    return scheduler_->Complete(tokens_[id], first_token);
  }
  std::string ZeroBlock() const {
    return std::string(engine_->kv_pool().layout().BlockBytes(), '\0');
  }
  static kv_transfer::IncomingBlock Block(int index, int n_tokens, const std::string& data) {
    const absl::Span<const uint8_t> bytes(reinterpret_cast<const uint8_t*>(data.data()),
                                          data.size());
    return {{index, n_tokens, kv_transfer::BlockChecksum(bytes)}, bytes};
  }
  std::vector<SequenceEvent> Events(const std::string& id) {
    std::vector<SequenceEvent> events;
    EXPECT_TRUE(scheduler_->WaitEvents(id, absl::Now() + absl::Seconds(5), &events).ok());
    return events;
  }
  // Every event of `id` up to its terminal one (at most 10 s).
  std::vector<SequenceEvent> EventsToTheEnd(const std::string& id) {
    std::vector<SequenceEvent> all;
    const absl::Time until = absl::Now() + absl::Seconds(10);
    while ((all.empty() || all.back().kind == SequenceEvent::Kind::kToken) && absl::Now() < until) {
      EXPECT_TRUE(scheduler_->WaitEvents(id, absl::Now() + absl::Milliseconds(50), &all).ok());
    }
    return all;
  }

  std::unique_ptr<engine::Engine> engine_;
  std::unique_ptr<DecodeScheduler> scheduler_;
  std::map<std::string, std::string> tokens_;  // request id → transfer token
};

TEST_F(DecodeSchedulerTest, RequestThatCanNeverFitIsResourceExhaustedAtOnce) {
  const absl::Time start = absl::Now();
  absl::StatusOr<int64_t> r = Reserve(Spec("huge", 10, 60));  // 70 positions: 5 blocks > 4
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted) << r.status();
  EXPECT_LT(absl::Now() - start, absl::Seconds(1));
}

TEST_F(DecodeSchedulerTest, ReservesPromptPlusMaxTokensAllOrNothing) {
  absl::StatusOr<int64_t> a = Reserve(Spec("a", 10, 30));  // 40 positions: 3 blocks
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(*a, 3);
  EXPECT_EQ(scheduler_->Load().free_kv_blocks, 1);
  EXPECT_EQ(scheduler_->StateOf("a"), SequenceState::kAwaitingKv);
  EXPECT_EQ(Reserve(Spec("a", 1, 1)).status().code(), absl::StatusCode::kAlreadyExists);

  // Two blocks cannot fit now: waiting ends at the deadline, or at cancellation, with nothing
  // taken.
  EXPECT_EQ(Reserve(Spec("b", 10, 20), absl::Milliseconds(100)).status().code(),
            absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(Reserve(Spec("b", 10, 20), absl::Seconds(30), [] { return true; }).status().code(),
            absl::StatusCode::kCancelled);
  EXPECT_EQ(scheduler_->Load().free_kv_blocks, 1);

  // It gets its blocks as soon as "a" lets go of them.
  std::future<absl::StatusOr<int64_t>> b =
      std::async(std::launch::async, [&] { return Reserve(Spec("b", 10, 20)); });
  const absl::Time until = absl::Now() + absl::Seconds(5);
  while (scheduler_->Load().queue_length != 1 && absl::Now() < until) {
    absl::SleepFor(absl::Milliseconds(1));
  }
  EXPECT_EQ(scheduler_->Load().queue_length, 1);
  scheduler_->Release("a");
  ASSERT_EQ(b.wait_for(std::chrono::seconds(5)), std::future_status::ready);
  absl::StatusOr<int64_t> b_result = b.get();
  ASSERT_TRUE(b_result.ok()) << b_result.status();
  EXPECT_EQ(*b_result, 2);
  EXPECT_EQ(scheduler_->Load().queue_length, 0);
  EXPECT_EQ(scheduler_->Load().active_sequences, 1);
  scheduler_->Release("b");
}

TEST_F(DecodeSchedulerTest, InvalidSpecsAreInvalidArgument) {
  EXPECT_EQ(Reserve(Spec("", 3, 3)).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Reserve(Spec("x", 0, 3)).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Reserve(Spec("x", 3, 0)).status().code(), absl::StatusCode::kInvalidArgument);
  DecodeSpec bad_id = Spec("x", 3, 3);
  bad_id.prompt_ids[1] = 1 << 20;
  EXPECT_EQ(Reserve(bad_id).status().code(), absl::StatusCode::kInvalidArgument);
  DecodeSpec bad_sampling = Spec("x", 3, 3);
  bad_sampling.sampling.temperature = -1;
  EXPECT_EQ(Reserve(bad_sampling).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(DecodeSchedulerTest, KvVerificationFailsTheSequenceAndFreesItsBlocks) {
  const std::string data = ZeroBlock();
  EXPECT_EQ(InstallKv("nobody", {}).code(), absl::StatusCode::kPermissionDenied);

  ASSERT_TRUE(Reserve(Spec("s", 20, 10)).ok());  // 2 prompt blocks: 16 + 4 tokens
  EXPECT_EQ(scheduler_->Load().free_kv_blocks, 2);
  ASSERT_TRUE(InstallKv("s", {Block(0, 16, data)}).ok());
  const absl::Status dup = InstallKv("s", {Block(0, 16, data)});
  EXPECT_EQ(dup.code(), absl::StatusCode::kInvalidArgument) << dup;
  EXPECT_EQ(scheduler_->StateOf("s"), SequenceState::kFailed);
  EXPECT_EQ(scheduler_->Load().free_kv_blocks, 4);
  const std::vector<SequenceEvent> events = Events("s");
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, SequenceEvent::Kind::kError);
  EXPECT_EQ(events[0].error.code(), absl::StatusCode::kInvalidArgument);
  // A failed sequence takes no more KV (its token opens nothing now), and failing it does not
  // touch anything else.
  EXPECT_EQ(InstallKv("s", {Block(1, 4, data)}).code(), absl::StatusCode::kPermissionDenied);
  scheduler_->Release("s");

  ASSERT_TRUE(Reserve(Spec("t", 20, 10)).ok());
  kv_transfer::IncomingBlock corrupt = Block(1, 4, data);
  corrupt.header.checksum ^= 1;
  EXPECT_EQ(InstallKv("t", {corrupt}).code(), absl::StatusCode::kDataLoss);
  scheduler_->Release("t");

  ASSERT_TRUE(Reserve(Spec("u", 20, 10)).ok());
  EXPECT_EQ(InstallKv("u", {Block(1, 16, data)}).code(),
            absl::StatusCode::kInvalidArgument);  // the last block holds 4 tokens
  scheduler_->Release("u");

  ASSERT_TRUE(Reserve(Spec("v", 20, 10)).ok());
  ASSERT_TRUE(InstallKv("v", {Block(0, 16, data)}).ok());
  EXPECT_EQ(CompleteKv("v", 7).code(), absl::StatusCode::kInvalidArgument);
  scheduler_->Release("v");
}

TEST_F(DecodeSchedulerTest, EndTokenFromPrefillOrMaxTokensOneEndAtOnce) {
  const std::string data = ZeroBlock();
  const std::vector<int32_t>& end_ids = engine_->tokenizer().end_of_generation_ids();
  ASSERT_FALSE(end_ids.empty());

  ASSERT_TRUE(Reserve(Spec("eos", 10, 10)).ok());
  ASSERT_TRUE(InstallKv("eos", {Block(0, 10, data)}).ok());
  ASSERT_TRUE(CompleteKv("eos", end_ids[0]).ok());
  std::vector<SequenceEvent> events = Events("eos");
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, SequenceEvent::Kind::kFinished);
  EXPECT_EQ(events[0].finish_reason, request::FinishReason::kEos);
  EXPECT_EQ(events[0].completion_tokens, 0);
  EXPECT_EQ(scheduler_->Load().free_kv_blocks, 4);
  scheduler_->Release("eos");

  ASSERT_TRUE(Reserve(Spec("one", 10, 1)).ok());
  ASSERT_TRUE(InstallKv("one", {Block(0, 10, data)}).ok());
  ASSERT_TRUE(CompleteKv("one", 7).ok());
  events = Events("one");
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].finish_reason, request::FinishReason::kLength);
  EXPECT_EQ(events[0].completion_tokens, 1);
  scheduler_->Release("one");
}

TEST_F(DecodeSchedulerTest, DecodesToMaxTokensWithIgnoreEosAndNeverRunsThePrompt) {
  const std::string data = ZeroBlock();
  DecodeSpec spec = Spec("run", 10, 20);
  spec.ignore_eos = true;
  ASSERT_TRUE(Reserve(spec).ok());
  ASSERT_TRUE(InstallKv("run", {Block(0, 10, data)}).ok());
  ASSERT_TRUE(CompleteKv("run", 7).ok());
  const std::vector<SequenceEvent> all = EventsToTheEnd("run");
  ASSERT_EQ(all.size(), 20u);  // tokens 1..19, then finished
  for (int i = 0; i < 19; ++i) EXPECT_EQ(all[i].index, i + 1);
  EXPECT_EQ(all.back().kind, SequenceEvent::Kind::kFinished);
  EXPECT_EQ(all.back().completion_tokens, 20);
  EXPECT_EQ(all.back().prompt_tokens_computed, 0);
  EXPECT_EQ(scheduler_->prompt_tokens_computed(), 0);
  scheduler_->Release("run");
}

// Records what the scheduler reports to its observer (DecodeMetrics in the worker).
class RecordingObserver final : public SchedulerObserver {
 public:
  void OnStep(absl::Duration forward_time, int64_t n_tokens) override {
    absl::MutexLock lock(&mu);
    ++steps;
    tokens += n_tokens;
    if (forward_time <= absl::ZeroDuration()) ++steps_without_time;
  }
  void OnSequenceEnd(SequenceState state, request::FinishReason reason) override {
    absl::MutexLock lock(&mu);
    ends.emplace_back(state, reason);
  }
  absl::Mutex mu;
  int64_t steps ABSL_GUARDED_BY(mu) = 0;
  int64_t tokens ABSL_GUARDED_BY(mu) = 0;
  int64_t steps_without_time ABSL_GUARDED_BY(mu) = 0;
  std::vector<std::pair<SequenceState, request::FinishReason>> ends ABSL_GUARDED_BY(mu);
};

TEST_F(DecodeSchedulerTest, TheObserverSeesEveryStepAndEveryEndOnce) {
  RecordingObserver observer;
  SchedulerOptions options;
  options.observer = &observer;
  scheduler_ = std::make_unique<DecodeScheduler>(engine_->config(), engine_->kv_pool(),
                                                 engine_->forward(),
                                                 engine_->tokenizer().end_of_generation_ids(),
                                                 options);
  const std::string data = ZeroBlock();
  DecodeSpec spec = Spec("run", 10, 12);
  spec.ignore_eos = true;
  ASSERT_TRUE(Reserve(spec).ok());
  ASSERT_TRUE(InstallKv("run", {Block(0, 10, data)}).ok());
  ASSERT_TRUE(CompleteKv("run", 7).ok());
  const std::vector<SequenceEvent> all = EventsToTheEnd("run");
  ASSERT_FALSE(all.empty());
  ASSERT_EQ(all.back().kind, SequenceEvent::Kind::kFinished);
  scheduler_->Release("run");
  ASSERT_TRUE(Reserve(Spec("gone", 10, 4)).ok());
  scheduler_->Release("gone");  // cancelled while awaiting its KV

  absl::MutexLock lock(&observer.mu);
  // Alone in the batch, the sequence made tokens 1..11 in 11 steps (token 0 came from prefill).
  EXPECT_EQ(observer.steps, 11);
  EXPECT_EQ(observer.tokens, 11);
  EXPECT_EQ(observer.steps_without_time, 0);
  ASSERT_EQ(observer.ends.size(), 2u);
  EXPECT_EQ(observer.ends[0].first, SequenceState::kFinished);
  EXPECT_EQ(observer.ends[0].second, request::FinishReason::kLength);
  EXPECT_EQ(observer.ends[1].first, SequenceState::kCancelled);
}

TEST_F(DecodeSchedulerTest, MaxBatchCapsTheStepAndTheRestWaitTheirTurn) {
  scheduler_.reset();
  SchedulerOptions options;
  options.max_batch = 2;
  scheduler_ = std::make_unique<DecodeScheduler>(
      engine_->config(), engine_->kv_pool(), engine_->forward(),
      engine_->tokenizer().end_of_generation_ids(), options);
  const std::string data = ZeroBlock();
  const std::vector<std::string> ids = {"q0", "q1", "q2", "q3"};
  for (const std::string& id : ids) {
    DecodeSpec spec = Spec(id, 4, 12);  // 16 positions: one block each, the whole pool
    spec.ignore_eos = true;
    ASSERT_TRUE(Reserve(spec).ok()) << id;
  }
  for (const std::string& id : ids) {
    ASSERT_TRUE(InstallKv(id, {Block(0, 4, data)}).ok());
    ASSERT_TRUE(CompleteKv(id, 7).ok());
  }
  for (const std::string& id : ids) {
    std::vector<SequenceEvent> all;
    const absl::Time until = absl::Now() + absl::Seconds(10);
    while ((all.empty() || all.back().kind == SequenceEvent::Kind::kToken) &&
           absl::Now() < until) {
      ASSERT_TRUE(scheduler_->WaitEvents(id, absl::Now() + absl::Milliseconds(50), &all).ok());
    }
    ASSERT_FALSE(all.empty()) << id;
    EXPECT_EQ(all.back().kind, SequenceEvent::Kind::kFinished) << id;
    EXPECT_EQ(all.back().completion_tokens, 12) << id;
    scheduler_->Release(id);
  }
  EXPECT_EQ(scheduler_->max_batch_seen(), 2);
}

// A KV storage whose block writes take `write_delay` each (a slow bus, or a slow peer) once
// set_slow(true).
class SlowWriteStorage final : public kv::KvBlockStorage {
 public:
  SlowWriteStorage(size_t bytes, absl::Duration write_delay)
      : host_(kv::MakeHostKvStorage(bytes)), write_delay_(write_delay) {}
  void set_slow(bool slow) { slow_ = slow; }
  size_t size() const override { return host_->size(); }
  uint8_t* data() override { return host_->data(); }
  bool host_addressable() const override { return true; }
  absl::Status CopyToHost(size_t offset, absl::Span<uint8_t> out) const override {
    return host_->CopyToHost(offset, out);
  }
  absl::Status CopyFromHost(size_t offset, absl::Span<const uint8_t> in) override {
    if (slow_) absl::SleepFor(write_delay_);
    return host_->CopyFromHost(offset, in);
  }
  absl::Status Zero(size_t offset, size_t bytes) override { return host_->Zero(offset, bytes); }
  absl::Status CopyBlocksFromHost(absl::Span<const int32_t> ids, size_t block_bytes,
                                  absl::Span<const absl::Span<const uint8_t>> in) override {
    if (slow_) absl::SleepFor(write_delay_);
    return host_->CopyBlocksFromHost(ids, block_bytes, in);
  }

 private:
  std::unique_ptr<kv::KvBlockStorage> host_;
  const absl::Duration write_delay_;
  std::atomic<bool> slow_{false};
};

TEST_F(DecodeSchedulerTest, DecodeStepsGoOnWhileKvIsWritten) {
  // A pool whose block writes will take 200 ms, under a scheduler of its own.
  const kv::KvLayout layout = engine_->kv_pool().layout();
  constexpr int64_t kBlocks = 128;
  auto storage =
      std::make_unique<SlowWriteStorage>(layout.BlockBytes() * kBlocks, absl::Milliseconds(200));
  SlowWriteStorage* slow_storage = storage.get();
  absl::StatusOr<std::unique_ptr<kv::KvBlockPool>> pool =
      kv::KvBlockPool::Create(layout, kBlocks, std::move(storage));
  ASSERT_TRUE(pool.ok()) << pool.status();
  kernels::ThreadPool threads(1);
  engine::CpuLlamaForward forward(engine_->weights(), **pool, threads, kernels::Isa::kScalar);
  SchedulerOptions options;
  options.min_step_duration = absl::Milliseconds(5);
  DecodeScheduler scheduler(engine_->config(), **pool, forward,
                            engine_->tokenizer().end_of_generation_ids(), options);
  const std::string data = ZeroBlock();
  auto receive = [&](const std::string& token, int n_prompt, int n_blocks) {
    absl::StatusOr<kv_transfer::KvReceiveSession> session =
        kv_transfer::KvReceiveSession::Open(scheduler, **pool, token);
    if (!session.ok()) return session.status();
    for (int b = 0; b < n_blocks; ++b) {
      const int n_tokens = std::min(16, n_prompt - 16 * b);
      if (absl::Status s = session->ReceiveCopies({Block(b, n_tokens, data)}); !s.ok()) return s;
    }
    return session->Complete(7);
  };
  // Three sequences decoding.
  const std::vector<std::string> running = {"r0", "r1", "r2"};
  for (const std::string& id : running) {
    DecodeSpec spec = Spec(id, 4, 400);  // 2 s of 5 ms steps
    spec.ignore_eos = true;
    absl::StatusOr<Reservation> r = scheduler.Reserve(spec, absl::Now() + absl::Seconds(5), {});
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_TRUE(receive(r->transfer_token, 4, 1).ok());
  }
  // A consumer notes when each token of the running sequences arrives.
  absl::Mutex mu;
  std::map<std::string, std::vector<absl::Time>> arrivals;  // guarded by mu
  std::atomic<bool> stop{false};
  std::thread consumer([&] {
    while (!stop) {
      for (const std::string& id : running) {
        std::vector<SequenceEvent> events;
        if (!scheduler.WaitEvents(id, absl::Now() + absl::Milliseconds(1), &events).ok()) return;
        const absl::Time now = absl::Now();
        absl::MutexLock lock(&mu);
        for (const SequenceEvent& e : events) {
          if (e.kind == SequenceEvent::Kind::kToken) arrivals[id].push_back(now);
        }
      }
    }
  });
  absl::SleepFor(absl::Milliseconds(50));

  // A fourth sequence's KV, two blocks written one at a time: 400 ms of writes.
  slow_storage->set_slow(true);
  DecodeSpec spec = Spec("arriving", 20, 10);
  absl::StatusOr<Reservation> r = scheduler.Reserve(spec, absl::Now() + absl::Seconds(5), {});
  ASSERT_TRUE(r.ok()) << r.status();
  const absl::Time install_start = absl::Now();
  std::future<absl::Status> install =
      std::async(std::launch::async, [&] { return receive(r->transfer_token, 20, 2); });
  ASSERT_EQ(install.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  const absl::Time install_end = absl::Now();
  absl::SleepFor(absl::Milliseconds(20));
  stop = true;
  consumer.join();
  ASSERT_TRUE(install.get().ok());
  EXPECT_GE(install_end - install_start, absl::Milliseconds(400));
  // Steps of >= 5 ms: a free batch gives every sequence a token every few ms during the install;
  // one that waited for a write (200 ms each) would leave a gap of 200 ms.
  absl::MutexLock lock(&mu);
  for (const std::string& id : running) {
    const std::vector<absl::Time>& times = arrivals[id];
    int64_t during = 0;
    absl::Duration longest_gap = absl::ZeroDuration();
    for (size_t i = 1; i < times.size(); ++i) {
      if (times[i] < install_start || times[i - 1] > install_end) continue;
      ++during;
      longest_gap = std::max(longest_gap, times[i] - times[i - 1]);
    }
    EXPECT_GE(during, 20) << id;
    EXPECT_LT(longest_gap, absl::Milliseconds(150))
        << id << ": no token for " << absl::FormatDuration(longest_gap) << " during a "
        << absl::FormatDuration(install_end - install_start) << " install";
  }
  for (const char* id : {"r0", "r1", "r2", "arriving"}) scheduler.Release(id);
}

TEST_F(DecodeSchedulerTest, LeaseRunsOutOnlyForTheReservationWhoseKvStalls) {
  scheduler_.reset();
  SchedulerOptions options;
  options.kv_lease.idle = absl::Milliseconds(300);
  options.kv_lease.max = absl::Seconds(30);
  scheduler_ = std::make_unique<DecodeScheduler>(
      engine_->config(), engine_->kv_pool(), engine_->forward(),
      engine_->tokenizer().end_of_generation_ids(), options);
  const std::string data = ZeroBlock();
  DecodeSpec flowing = Spec("flowing", 20, 10);
  flowing.ignore_eos = true;
  ASSERT_TRUE(Reserve(flowing).ok());
  ASSERT_TRUE(Reserve(Spec("stalled", 20, 5)).ok());
  const absl::Time start = absl::Now();
  // "stalled" gets its first block, then nothing.
  ASSERT_TRUE(InstallKv("stalled", {Block(0, 16, data)}).ok());
  // "flowing" gets a block every 100 ms: its lease holds past the idle limit.
  ASSERT_TRUE(InstallKv("flowing", {Block(0, 16, data)}).ok());
  absl::SleepFor(absl::Milliseconds(200));
  ASSERT_TRUE(InstallKv("flowing", {Block(1, 4, data)}).ok());
  absl::SleepFor(absl::Milliseconds(200));
  ASSERT_TRUE(CompleteKv("flowing", 7).ok());

  std::vector<SequenceEvent> events;
  while (events.empty() && absl::Now() - start < absl::Seconds(5)) {
    ASSERT_TRUE(
        scheduler_->WaitEvents("stalled", absl::Now() + absl::Milliseconds(50), &events).ok());
  }
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, SequenceEvent::Kind::kError);
  EXPECT_EQ(events[0].error.code(), absl::StatusCode::kAborted) << events[0].error;
  EXPECT_NE(events[0].error.message().find("lease ran out"), std::string::npos) << events[0].error;
  EXPECT_EQ(scheduler_->StateOf("stalled"), SequenceState::kFailed);
  EXPECT_EQ(InstallKv("stalled", {Block(1, 4, data)}).code(), absl::StatusCode::kPermissionDenied);
  scheduler_->Release("stalled");

  std::vector<SequenceEvent> all;
  while ((all.empty() || all.back().kind == SequenceEvent::Kind::kToken) &&
         absl::Now() - start < absl::Seconds(10)) {
    ASSERT_TRUE(scheduler_->WaitEvents("flowing", absl::Now() + absl::Milliseconds(50), &all).ok());
  }
  ASSERT_FALSE(all.empty());
  EXPECT_EQ(all.back().kind, SequenceEvent::Kind::kFinished);
  EXPECT_EQ(all.back().completion_tokens, 10);
  scheduler_->Release("flowing");

  // Before any KV arrives only the hard cap applies (the request may wait in a prefill queue).
  ASSERT_TRUE(Reserve(Spec("queued", 10, 5)).ok());
  absl::SleepFor(absl::Milliseconds(400));
  events.clear();
  ASSERT_TRUE(scheduler_->WaitEvents("queued", absl::Now(), &events).ok());
  EXPECT_TRUE(events.empty());
  EXPECT_EQ(scheduler_->StateOf("queued"), SequenceState::kAwaitingKv);
  scheduler_->Release("queued");

  // The hard cap holds however often KV arrives.
  scheduler_.reset();
  options.kv_lease.idle = absl::Seconds(30);
  options.kv_lease.max = absl::Milliseconds(300);
  scheduler_ = std::make_unique<DecodeScheduler>(
      engine_->config(), engine_->kv_pool(), engine_->forward(),
      engine_->tokenizer().end_of_generation_ids(), options);
  ASSERT_TRUE(Reserve(Spec("capped", 40, 5)).ok());
  ASSERT_TRUE(InstallKv("capped", {Block(0, 16, data)}).ok());
  absl::SleepFor(absl::Milliseconds(350));
  // The scheduler's timer ends the reservation when the cap passes: KV that comes later finds
  // it gone (or, racing the timer, the lease's own error); its consumer is told which limit.
  const absl::Status late = InstallKv("capped", {Block(1, 16, data)});
  EXPECT_TRUE(late.code() == absl::StatusCode::kPermissionDenied ||
              late.code() == absl::StatusCode::kAborted)
      << late;
  EXPECT_EQ(scheduler_->StateOf("capped"), SequenceState::kFailed);
  const std::vector<SequenceEvent> capped = Events("capped");
  ASSERT_EQ(capped.size(), 1u);
  EXPECT_EQ(capped[0].error.code(), absl::StatusCode::kAborted) << capped[0].error;
  EXPECT_NE(capped[0].error.message().find("longer than"), std::string::npos) << capped[0].error;
  scheduler_->Release("capped");
}

TEST_F(DecodeSchedulerTest, BlocksOfAnUnfinishedHandoffWaitOutTheQuarantine) {
  scheduler_.reset();
  SchedulerOptions options;
  options.kv_quarantine = absl::Milliseconds(300);
  scheduler_ = std::make_unique<DecodeScheduler>(
      engine_->config(), engine_->kv_pool(), engine_->forward(),
      engine_->tokenizer().end_of_generation_ids(), options);
  const std::string data = ZeroBlock();
  // Cancelled while its KV arrives: a same-host sender may still be writing its blocks.
  ASSERT_TRUE(Reserve(Spec("cut", 20, 10)).ok());  // 2 blocks
  ASSERT_TRUE(InstallKv("cut", {Block(0, 16, data)}).ok());
  scheduler_->Release("cut");
  SchedulerLoad load = scheduler_->Load();
  EXPECT_EQ(load.free_kv_blocks, 2);
  EXPECT_EQ(load.quarantined_kv_blocks, 2);
  // A reservation that needs them waits for the quarantine, then gets them.
  const absl::Time start = absl::Now();
  ASSERT_TRUE(Reserve(Spec("next", 40, 20)).ok());  // 4 blocks
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(250));
  EXPECT_EQ(scheduler_->Load().quarantined_kv_blocks, 0);
  // Its KV completes (and it ends there, on an end token): its blocks come back at once.
  ASSERT_TRUE(InstallKv("next", {Block(0, 16, data), Block(1, 16, data), Block(2, 8, data)}).ok());
  ASSERT_TRUE(CompleteKv("next", engine_->tokenizer().end_of_generation_ids()[0]).ok());
  scheduler_->Release("next");
  load = scheduler_->Load();
  EXPECT_EQ(load.free_kv_blocks, 4);
  EXPECT_EQ(load.quarantined_kv_blocks, 0);
}

TEST_F(DecodeSchedulerTest, PinnedBlocksOutliveTheirSequenceUntilUnpinned) {
  ASSERT_TRUE(Reserve(Spec("pinned", 20, 10)).ok());  // 2 blocks
  const std::string token = tokens_["pinned"];
  const std::vector<int64_t> indices = {0, 1};
  ASSERT_TRUE(scheduler_->Pin(token, indices).ok());
  // A second session may not pin the same blocks: that fails the sequence.
  EXPECT_EQ(scheduler_->Pin(token, {1}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(scheduler_->StateOf("pinned"), SequenceState::kFailed);
  scheduler_->Release("pinned");  // the consumer went away while bytes were being written
  EXPECT_EQ(engine_->kv_pool().n_free(), 2);  // still held: a write may be in progress
  const absl::Status unpinned = scheduler_->Unpin(token, indices, absl::OkStatus());
  EXPECT_FALSE(unpinned.ok());  // the sequence had ended meanwhile
  EXPECT_EQ(engine_->kv_pool().n_free(), 4);
  EXPECT_EQ(scheduler_->Lookup(token).status().code(), absl::StatusCode::kPermissionDenied);
}

}  // namespace
}  // namespace pdserve::decode
