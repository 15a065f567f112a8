// DecodeScheduler as plain C++ (no gRPC): reservation (all or nothing, never-fits, waiting
// bounded by deadline and cancellation), KV verification, immediate ends, and block accounting.

#include "decode_node/decode_scheduler.h"

#include <future>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "tests/decode_node/decode_test_support.h"
#include "tests/support/stories_engine.h"
#include "xxhash.h"

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
  absl::StatusOr<int64_t> Reserve(const DecodeSpec& spec,
                                  absl::Duration timeout = absl::Seconds(5),
                                  std::function<bool()> cancelled = [] { return false; }) {
    return scheduler_->Reserve(spec, absl::Now() + timeout, cancelled);
  }
  std::string ZeroBlock() const {
    return std::string(engine_->kv_pool().layout().BlockBytes(), '\0');
  }
  ReceivedBlock Block(int index, int n_tokens, const std::string& data) const {
    return ReceivedBlock{index, n_tokens,
                         absl::Span<const uint8_t>(
                             reinterpret_cast<const uint8_t*>(data.data()), data.size()),
                         XXH3_64bits(data.data(), data.size())};
  }
  std::vector<SequenceEvent> Events(const std::string& id) {
    std::vector<SequenceEvent> events;
    EXPECT_TRUE(scheduler_->WaitEvents(id, absl::Now() + absl::Seconds(5), &events).ok());
    return events;
  }

  std::unique_ptr<engine::Engine> engine_;
  std::unique_ptr<DecodeScheduler> scheduler_;
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
  EXPECT_EQ(scheduler_->InstallKv("nobody", 20, {}).code(), absl::StatusCode::kNotFound);

  ASSERT_TRUE(Reserve(Spec("s", 20, 10)).ok());  // 2 prompt blocks: 16 + 4 tokens
  EXPECT_EQ(scheduler_->Load().free_kv_blocks, 2);
  ASSERT_TRUE(scheduler_->InstallKv("s", 20, {Block(0, 16, data)}).ok());
  const absl::Status dup = scheduler_->InstallKv("s", 20, {Block(0, 16, data)});
  EXPECT_EQ(dup.code(), absl::StatusCode::kInvalidArgument) << dup;
  EXPECT_EQ(scheduler_->StateOf("s"), SequenceState::kFailed);
  EXPECT_EQ(scheduler_->Load().free_kv_blocks, 4);
  const std::vector<SequenceEvent> events = Events("s");
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, SequenceEvent::Kind::kError);
  EXPECT_EQ(events[0].error.code(), absl::StatusCode::kInvalidArgument);
  // A failed sequence takes no more KV, and failing it does not touch anything else.
  EXPECT_EQ(scheduler_->InstallKv("s", 20, {Block(1, 4, data)}).code(),
            absl::StatusCode::kFailedPrecondition);
  scheduler_->Release("s");

  ASSERT_TRUE(Reserve(Spec("t", 20, 10)).ok());
  ReceivedBlock corrupt = Block(1, 4, data);
  corrupt.checksum ^= 1;
  EXPECT_EQ(scheduler_->InstallKv("t", 20, {corrupt}).code(), absl::StatusCode::kDataLoss);
  scheduler_->Release("t");

  ASSERT_TRUE(Reserve(Spec("u", 20, 10)).ok());
  EXPECT_EQ(scheduler_->InstallKv("u", 20, {Block(1, 16, data)}).code(),
            absl::StatusCode::kInvalidArgument);  // the last block holds 4 tokens
  scheduler_->Release("u");

  ASSERT_TRUE(Reserve(Spec("v", 20, 10)).ok());
  ASSERT_TRUE(scheduler_->InstallKv("v", 20, {Block(0, 16, data)}).ok());
  EXPECT_EQ(scheduler_->CompleteKv("v", 7).code(), absl::StatusCode::kInvalidArgument);
  scheduler_->Release("v");
}

TEST_F(DecodeSchedulerTest, EndTokenFromPrefillOrMaxTokensOneEndAtOnce) {
  const std::string data = ZeroBlock();
  const std::vector<int32_t>& end_ids = engine_->tokenizer().end_of_generation_ids();
  ASSERT_FALSE(end_ids.empty());

  ASSERT_TRUE(Reserve(Spec("eos", 10, 10)).ok());
  ASSERT_TRUE(scheduler_->InstallKv("eos", 10, {Block(0, 10, data)}).ok());
  ASSERT_TRUE(scheduler_->CompleteKv("eos", end_ids[0]).ok());
  std::vector<SequenceEvent> events = Events("eos");
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, SequenceEvent::Kind::kFinished);
  EXPECT_EQ(events[0].finish_reason, "eos");
  EXPECT_EQ(events[0].completion_tokens, 0);
  EXPECT_EQ(scheduler_->Load().free_kv_blocks, 4);
  scheduler_->Release("eos");

  ASSERT_TRUE(Reserve(Spec("one", 10, 1)).ok());
  ASSERT_TRUE(scheduler_->InstallKv("one", 10, {Block(0, 10, data)}).ok());
  ASSERT_TRUE(scheduler_->CompleteKv("one", 7).ok());
  events = Events("one");
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].finish_reason, "length");
  EXPECT_EQ(events[0].completion_tokens, 1);
  scheduler_->Release("one");
}

TEST_F(DecodeSchedulerTest, DecodesToMaxTokensWithIgnoreEosAndNeverRunsThePrompt) {
  const std::string data = ZeroBlock();
  DecodeSpec spec = Spec("run", 10, 20);
  spec.ignore_eos = true;
  ASSERT_TRUE(Reserve(spec).ok());
  ASSERT_TRUE(scheduler_->InstallKv("run", 10, {Block(0, 10, data)}).ok());
  ASSERT_TRUE(scheduler_->CompleteKv("run", 7).ok());
  std::vector<SequenceEvent> all;
  const absl::Time until = absl::Now() + absl::Seconds(10);
  while ((all.empty() || all.back().kind == SequenceEvent::Kind::kToken) && absl::Now() < until) {
    ASSERT_TRUE(scheduler_->WaitEvents("run", absl::Now() + absl::Milliseconds(50), &all).ok());
  }
  ASSERT_EQ(all.size(), 20u);  // tokens 1..19, then finished
  for (int i = 0; i < 19; ++i) EXPECT_EQ(all[i].index, i + 1);
  EXPECT_EQ(all.back().kind, SequenceEvent::Kind::kFinished);
  EXPECT_EQ(all.back().completion_tokens, 20);
  EXPECT_EQ(all.back().prompt_tokens_computed, 0);
  EXPECT_EQ(scheduler_->prompt_tokens_computed(), 0);
  scheduler_->Release("run");
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
    ASSERT_TRUE(scheduler_->InstallKv(id, 4, {Block(0, 4, data)}).ok());
    ASSERT_TRUE(scheduler_->CompleteKv(id, 7).ok());
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

}  // namespace
}  // namespace pdserve::decode
