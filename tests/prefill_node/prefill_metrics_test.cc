// The prefill worker's /metrics text: each call's outcome, tokens, times and KV bytes as the
// service records them, and the scheduler's queue and running jobs sampled at the scrape.

#include "prefill_node/prefill_metrics.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/notification.h"
#include "tests/prefill_node/prefill_test_jobs.h"
#include "tests/support/metrics_sample.h"
#include "tests/support/stories_engine.h"
#include "tests/support/wait_for.h"

namespace pdserve::prefill {
namespace {

using test_support::BucketBounds;
using test_support::MetricSample;
using test_support::MetricTypes;

// A decode worker that takes every block and verifies every handoff at once.
class AcceptingStream final : public kv_transfer::KvSendStream {
 public:
  absl::string_view transport() const override { return "fake"; }
  absl::Status SendBlocks(absl::Span<const kv_transfer::OutgoingBlock>) override {
    return absl::OkStatus();
  }
  absl::Status Finish(int32_t) override { return absl::OkStatus(); }
  void Cancel() override {}
};
class AcceptingTransports final : public kv_transfer::KvSendStreamFactory {
 public:
  absl::StatusOr<std::unique_ptr<kv_transfer::KvSendStream>> Open(
      const kv_transfer::Handoff&, const kv_transfer::SenderHello&, absl::Time) override {
    return std::make_unique<AcceptingStream>();
  }
};

// Metrics of a stories260K prefill scheduler that runs nothing: RecordPrefill is called by hand.
class IdleSchedulerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    engine_ = test_support::LoadStoriesEngine(0);
    ASSERT_NE(engine_, nullptr);
    scheduler_ =
        std::make_unique<PrefillScheduler>(*engine_, transports_, PrefillSchedulerOptions{});
    metrics_ = std::make_unique<PrefillMetrics>(*scheduler_);
  }

  std::unique_ptr<engine::Engine> engine_;
  AcceptingTransports transports_;
  std::unique_ptr<PrefillScheduler> scheduler_;
  std::unique_ptr<PrefillMetrics> metrics_;
};

TEST_F(IdleSchedulerTest, CountsOutcomesAndOnlySucceededWork) {
  PrefillMetrics& metrics = *metrics_;

  PrefillOutcome outcome;
  outcome.queue_seconds = 0.002;
  outcome.prefill_seconds = 0.03;
  outcome.transfer.bytes = 3000;
  outcome.transfer.seconds = 0.0004;
  metrics.RecordPrefill(40, outcome);
  metrics.RecordPrefill(25, outcome);
  metrics.RecordPrefill(99, absl::CancelledError("the caller cancelled the prefill call"));
  metrics.RecordPrefill(99, absl::DeadlineExceededError("deadline"));
  metrics.RecordPrefill(99, absl::ResourceExhaustedError("prefill queue is full"));

  const std::string text = metrics.RenderText();
  EXPECT_EQ(MetricSample(text, "pdserve_prefill_requests_total{outcome=\"succeeded\"}"), 2) << text;
  EXPECT_EQ(MetricSample(text, "pdserve_prefill_requests_total{outcome=\"cancelled\"}"), 2);
  EXPECT_EQ(MetricSample(text, "pdserve_prefill_requests_total{outcome=\"failed\"}"), 1);
  EXPECT_EQ(MetricSample(text, "pdserve_prefill_prompt_tokens_total"), 65);
  EXPECT_EQ(MetricSample(text, "pdserve_prefill_seconds_count"), 2);
  EXPECT_DOUBLE_EQ(MetricSample(text, "pdserve_prefill_seconds_sum"), 0.06);
  EXPECT_EQ(MetricSample(text, "pdserve_prefill_queue_time_seconds_bucket{le=\"0.0025\"}"), 2);
  EXPECT_EQ(MetricSample(text, "pdserve_prefill_queue_time_seconds_bucket{le=\"0.001\"}"), 0);
  EXPECT_EQ(MetricSample(text, "pdserve_prefill_kv_send_seconds_count"), 2);
  EXPECT_EQ(MetricSample(text, "pdserve_prefill_kv_send_bytes_bucket{le=\"4096\"}"), 2);
  EXPECT_EQ(MetricSample(text, "pdserve_prefill_kv_send_bytes_bucket{le=\"1024\"}"), 0);
}

TEST(PrefillMetricsTest, QueueAndRunningGaugesFollowTheScheduler) {
  std::unique_ptr<engine::Engine> engine = test_support::LoadStoriesEngine(0);
  ASSERT_NE(engine, nullptr);
  AcceptingTransports transports;
  absl::Notification release;
  PrefillSchedulerOptions options;
  options.n_executors = 1;
  options.before_chunk = [&release](const std::string&, int) { release.WaitForNotification(); };
  PrefillScheduler scheduler(*engine, transports, options);
  PrefillMetrics metrics(scheduler);

  absl::Mutex mu;
  int n_done = 0;
  for (const char* id : {"a", "b"}) {
    PrefillJob job = testing::ValidJob(*engine, id, 20);
    const int64_t n_prompt = static_cast<int64_t>(job.prompt_ids.size());
    ASSERT_TRUE(scheduler
                    .StartPrefill(std::move(job),
                                  [&, n_prompt](absl::StatusOr<PrefillOutcome> outcome) {
                                    metrics.RecordPrefill(n_prompt, outcome);
                                    absl::MutexLock lock(&mu);
                                    ++n_done;
                                  })
                    .ok());
  }
  // One runs (held before its first chunk), the other waits for the one executor.
  ASSERT_TRUE(test_support::WaitFor([&] {
    return MetricSample(metrics.RenderText(), "pdserve_prefill_requests_running") == 1;
  }));
  std::string text = metrics.RenderText();
  EXPECT_EQ(MetricSample(text, "pdserve_prefill_requests_queued"), 1) << text;

  release.Notify();
  ASSERT_TRUE(test_support::WaitFor([&] {
    absl::MutexLock lock(&mu);
    return n_done == 2;
  }));
  text = metrics.RenderText();
  EXPECT_EQ(MetricSample(text, "pdserve_prefill_requests_running"), 0) << text;
  EXPECT_EQ(MetricSample(text, "pdserve_prefill_requests_queued"), 0);
  EXPECT_EQ(MetricSample(text, "pdserve_prefill_requests_total{outcome=\"succeeded\"}"), 2);
  EXPECT_EQ(MetricSample(text, "pdserve_prefill_prompt_tokens_total"), 40);
  EXPECT_GT(MetricSample(text, "pdserve_prefill_seconds_sum"), 0);
}

// The families docs/metrics.md lists for a prefill worker, each with its type, every outcome's
// counter from the start, and the documented buckets.
TEST_F(IdleSchedulerTest, ExportsTheDocumentedFamilies) {
  const std::string text = metrics_->RenderText();
  EXPECT_EQ(MetricTypes(text), (std::map<std::string, std::string>{
                                   {"pdserve_prefill_requests_total", "counter"},
                                   {"pdserve_prefill_prompt_tokens_total", "counter"},
                                   {"pdserve_prefill_queue_time_seconds", "histogram"},
                                   {"pdserve_prefill_seconds", "histogram"},
                                   {"pdserve_prefill_kv_send_seconds", "histogram"},
                                   {"pdserve_prefill_kv_send_bytes", "histogram"},
                                   {"pdserve_prefill_requests_queued", "gauge"},
                                   {"pdserve_prefill_requests_running", "gauge"}}))
      << text;
  for (const char* outcome : {"succeeded", "failed", "cancelled"}) {
    EXPECT_EQ(MetricSample(text, std::string("pdserve_prefill_requests_total{outcome=\"") +
                                     outcome + "\"}"),
              0)
        << outcome;
  }
  EXPECT_EQ(BucketBounds(text, "pdserve_prefill_kv_send_seconds"),
            (std::vector<std::string>{"0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005",
                                      "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5",
                                      "5", "10", "+Inf"}));
}

}  // namespace
}  // namespace pdserve::prefill
