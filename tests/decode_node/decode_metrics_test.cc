// The decode worker's /metrics text: steps, tokens and sequence ends as the scheduler reports
// them, and the KV pool and sequences sampled from the scheduler at each scrape.

#include "decode_node/decode_metrics.h"

#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "tests/support/metrics_sample.h"
#include "tests/support/stories_engine.h"

namespace pdserve::decode {
namespace {

using test_support::BucketBounds;
using test_support::MetricSample;
using test_support::MetricTypes;

TEST(DecodeMetricsTest, StepsTokensAndEndsAreCounted) {
  DecodeMetrics metrics;
  metrics.OnStep(absl::Milliseconds(3), 4);
  metrics.OnStep(absl::Milliseconds(20), 2);
  metrics.OnSequenceEnd(SequenceState::kFinished, request::FinishReason::kLength);
  metrics.OnSequenceEnd(SequenceState::kFinished, request::FinishReason::kEos);
  metrics.OnSequenceEnd(SequenceState::kFinished, request::FinishReason::kEos);
  metrics.OnSequenceEnd(SequenceState::kCancelled, request::FinishReason::kLength);
  metrics.OnSequenceEnd(SequenceState::kFailed, request::FinishReason::kLength);
  const std::string text = metrics.RenderText();
  EXPECT_EQ(MetricSample(text, "pdserve_decode_step_seconds_count"), 2) << text;
  EXPECT_EQ(MetricSample(text, "pdserve_decode_step_seconds_bucket{le=\"0.005\"}"), 1);
  EXPECT_EQ(MetricSample(text, "pdserve_decode_step_seconds_bucket{le=\"0.025\"}"), 2);
  EXPECT_DOUBLE_EQ(MetricSample(text, "pdserve_decode_step_seconds_sum"), 0.023);
  EXPECT_EQ(MetricSample(text, "pdserve_decode_tokens_total"), 6);
  const auto sequences = [&](const char* outcome, const char* reason) {
    return MetricSample(text, std::string("pdserve_decode_sequences_total{outcome=\"") + outcome +
                                  "\",finish_reason=\"" + reason + "\"}");
  };
  EXPECT_EQ(sequences("succeeded", "length"), 1);
  EXPECT_EQ(sequences("succeeded", "eos"), 2);
  EXPECT_EQ(sequences("cancelled", "none"), 1);
  EXPECT_EQ(sequences("failed", "none"), 1);
}

// Metrics that observe and track a stories260K scheduler of 64 tokens (4 blocks of 16).
class TrackedSchedulerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    engine_ = test_support::LoadStoriesEngine(64);
    ASSERT_NE(engine_, nullptr);
    SchedulerOptions options;
    options.observer = &metrics_;
    scheduler_ = std::make_unique<DecodeScheduler>(
        engine_->config(), engine_->kv_pool(), engine_->forward(),
        engine_->tokenizer().end_of_generation_ids(), options);
    metrics_.TrackScheduler(*scheduler_);
  }

  std::unique_ptr<engine::Engine> engine_;
  DecodeMetrics metrics_;
  std::unique_ptr<DecodeScheduler> scheduler_;  // last: stopped first
};

TEST_F(TrackedSchedulerTest, PoolAndSequenceGaugesFollowTheScheduler) {
  DecodeMetrics& metrics = metrics_;
  DecodeScheduler& scheduler = *scheduler_;
  std::string text = metrics.RenderText();
  EXPECT_EQ(MetricSample(text, "pdserve_kv_blocks_total"), 4) << text;
  EXPECT_EQ(MetricSample(text, "pdserve_kv_blocks_free"), 4);
  EXPECT_EQ(MetricSample(text, "pdserve_kv_blocks_used"), 0);

  // 10 prompt + 30 max tokens: 3 blocks reserved; a second such request waits for blocks.
  DecodeSpec spec;
  spec.prompt_ids.assign(10, 5);
  spec.max_tokens = 30;
  for (const char* id : {"first", "second"}) {
    spec.request_id = id;
    ReserveCall call;
    call.spec = spec;
    call.on_reserved = [](absl::StatusOr<Reservation>) {};
    ASSERT_TRUE(scheduler.StartReserve(std::move(call)).ok());
  }
  text = metrics.RenderText();
  EXPECT_EQ(MetricSample(text, "pdserve_kv_blocks_free"), 1) << text;
  EXPECT_EQ(MetricSample(text, "pdserve_kv_blocks_used"), 3);
  EXPECT_EQ(MetricSample(text, "pdserve_sequences_running"), 1);
  EXPECT_EQ(MetricSample(text, "pdserve_sequences_waiting"), 1);

  scheduler.Release("first");   // cancelled: its blocks go to the waiter
  scheduler.Release("second");  // cancelled too
  text = metrics.RenderText();
  EXPECT_EQ(MetricSample(text, "pdserve_kv_blocks_free"), 4) << text;
  EXPECT_EQ(MetricSample(text, "pdserve_sequences_running"), 0);
  EXPECT_EQ(MetricSample(text, "pdserve_sequences_waiting"), 0);
  EXPECT_EQ(MetricSample(text, "pdserve_decode_sequences_total{outcome=\"cancelled\","
                               "finish_reason=\"none\"}"),
            2);
}

// The families docs/metrics.md lists for a decode worker, each with its type, every outcome's
// counter from the start, and the documented buckets.
TEST_F(TrackedSchedulerTest, ExportsTheDocumentedFamilies) {
  DecodeMetrics& metrics = metrics_;
  const std::string text = metrics.RenderText();
  EXPECT_EQ(MetricTypes(text), (std::map<std::string, std::string>{
                                   {"pdserve_decode_step_seconds", "histogram"},
                                   {"pdserve_decode_tokens_total", "counter"},
                                   {"pdserve_decode_sequences_total", "counter"},
                                   {"pdserve_kv_blocks_free", "gauge"},
                                   {"pdserve_kv_blocks_used", "gauge"},
                                   {"pdserve_kv_blocks_total", "gauge"},
                                   {"pdserve_sequences_running", "gauge"},
                                   {"pdserve_sequences_waiting", "gauge"}}))
      << text;
  for (const char* labels : {"outcome=\"succeeded\",finish_reason=\"length\"",
                             "outcome=\"succeeded\",finish_reason=\"eos\"",
                             "outcome=\"cancelled\",finish_reason=\"none\"",
                             "outcome=\"failed\",finish_reason=\"none\""}) {
    EXPECT_EQ(MetricSample(text, std::string("pdserve_decode_sequences_total{") + labels + "}"), 0)
        << labels;
  }
  EXPECT_EQ(BucketBounds(text, "pdserve_decode_step_seconds"),
            (std::vector<std::string>{"0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005",
                                      "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5",
                                      "5", "+Inf"}));
}

}  // namespace
}  // namespace pdserve::decode
