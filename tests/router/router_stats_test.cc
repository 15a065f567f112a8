// Percentile math on known data and the counts and windows of RouterStats.

#include "router/router_stats.h"

#include <gtest/gtest.h>

namespace pdserve::router {
namespace {

TEST(PercentileTest, NearestRankOnKnownData) {
  std::vector<double> one_to_hundred;
  for (int i = 100; i >= 1; --i) one_to_hundred.push_back(i);  // any order
  EXPECT_EQ(NearestRankPercentile(one_to_hundred, 50), 50);
  EXPECT_EQ(NearestRankPercentile(one_to_hundred, 90), 90);
  EXPECT_EQ(NearestRankPercentile(one_to_hundred, 99), 99);
  EXPECT_EQ(NearestRankPercentile(one_to_hundred, 100), 100);
  EXPECT_EQ(NearestRankPercentile(one_to_hundred, 0), 1);
  // n = 5: p50 is rank ceil(2.5) = 3, p90 rank ceil(4.5) = 5.
  EXPECT_EQ(NearestRankPercentile({10, 40, 20, 50, 30}, 50), 30);
  EXPECT_EQ(NearestRankPercentile({10, 40, 20, 50, 30}, 90), 50);
  EXPECT_EQ(NearestRankPercentile({10, 40, 20, 50, 30}, 20), 10);
  EXPECT_EQ(NearestRankPercentile({10, 40, 20, 50, 30}, 21), 20);
  EXPECT_EQ(NearestRankPercentile({}, 50), 0);
  EXPECT_EQ(NearestRankPercentile({7}, 99), 7);
}

TEST(PercentileTest, SummaryHasCountMeanAndPercentiles) {
  std::deque<double> values = {4, 1, 3, 2};
  v1::LatencySummary s = Summarize(values);
  EXPECT_EQ(s.count(), 4);
  EXPECT_DOUBLE_EQ(s.mean(), 2.5);
  EXPECT_EQ(s.p50(), 2);
  EXPECT_EQ(s.p90(), 4);
  EXPECT_EQ(s.p99(), 4);
  EXPECT_EQ(Summarize({}).count(), 0);
  EXPECT_EQ(Summarize({}).mean(), 0);
}

RequestRecord Success(double ttft, double tpot, int64_t completion, std::string prefill = "p",
                      std::string decode = "d") {
  RequestRecord r;
  r.outcome = RequestOutcome::kSucceeded;
  r.queue_seconds = ttft / 2;
  r.ttft_seconds = ttft;
  r.tpot_seconds = tpot;
  r.e2e_seconds = ttft + tpot * static_cast<double>(completion - 1);
  r.prompt_tokens = 10;
  r.completion_tokens = completion;
  r.prefill_worker = std::move(prefill);
  r.decode_worker = std::move(decode);
  return r;
}

TEST(RouterStatsTest, CountsOutcomesTokensThroughputAndPerWorker) {
  absl::Time now = absl::FromUnixSeconds(100);
  RouterStats stats([&] { return now; });
  for (int i = 0; i < 5; ++i) stats.RecordArrival();
  stats.RecordDispatch("p");
  stats.RecordDispatch("d");
  stats.RecordFinish(Success(0.1, 0.01, 5));
  stats.RecordDispatch("p");
  stats.RecordDispatch("d");
  stats.RecordFinish(Success(0.3, 0.03, 1));  // one token: no TPOT sample
  RequestRecord failed;
  failed.outcome = RequestOutcome::kFailed;
  stats.RecordFinish(failed);
  RequestRecord cancelled;
  cancelled.outcome = RequestOutcome::kCancelled;
  stats.RecordDispatch("d");
  cancelled.decode_worker = "d";
  stats.RecordFinish(cancelled);
  now += absl::Seconds(2);

  WorkerSnapshot p;
  p.worker_id = "p";
  p.role = v1::WORKER_ROLE_PREFILL;
  p.load.set_queue_length(3);
  WorkerSnapshot d;
  d.worker_id = "d";
  d.role = v1::WORKER_ROLE_DECODE;
  d.load.set_free_kv_blocks(7);
  d.load.set_total_kv_blocks(9);
  v1::GetStatsResponse response = stats.Get({p, d});
  const v1::ClusterStats& c = response.cluster();
  EXPECT_EQ(c.requests().received(), 5);
  EXPECT_EQ(c.requests().succeeded(), 2);
  EXPECT_EQ(c.requests().failed(), 1);
  EXPECT_EQ(c.requests().cancelled(), 1);
  EXPECT_EQ(c.requests().in_flight(), 1);
  EXPECT_EQ(c.ttft_seconds().count(), 2);
  EXPECT_DOUBLE_EQ(c.ttft_seconds().mean(), 0.2);
  EXPECT_EQ(c.ttft_seconds().p99(), 0.3);
  EXPECT_EQ(c.tpot_seconds().count(), 1);
  EXPECT_EQ(c.tpot_seconds().p50(), 0.01);
  EXPECT_EQ(c.queue_seconds().p50(), 0.05);
  EXPECT_EQ(c.prompt_tokens(), 20);
  EXPECT_EQ(c.completion_tokens(), 6);
  EXPECT_DOUBLE_EQ(c.uptime_seconds(), 2);
  EXPECT_DOUBLE_EQ(c.output_tokens_per_second(), 3);

  ASSERT_EQ(response.workers_size(), 2);
  const v1::WorkerStats& ps = response.workers(0);
  EXPECT_EQ(ps.worker().worker_id(), "p");
  EXPECT_EQ(ps.worker().load().queue_length(), 3);
  EXPECT_EQ(ps.requests().received(), 2);
  EXPECT_EQ(ps.requests().succeeded(), 2);
  EXPECT_EQ(ps.requests().in_flight(), 0);
  EXPECT_EQ(ps.tokens(), 20);  // prompt tokens prefilled
  const v1::WorkerStats& ds = response.workers(1);
  EXPECT_EQ(ds.worker().load().free_kv_blocks(), 7);
  EXPECT_EQ(ds.requests().received(), 3);
  EXPECT_EQ(ds.requests().cancelled(), 1);
  EXPECT_EQ(ds.tokens(), 4);  // tokens after the first
  EXPECT_EQ(ds.ttft_seconds().count(), 2);
}

TEST(RouterStatsTest, WindowKeepsOnlyTheLatestRequests) {
  absl::Time now = absl::FromUnixSeconds(100);
  RouterStats stats([&] { return now; }, /*window=*/3);
  for (int i = 1; i <= 5; ++i) {
    stats.RecordArrival();
    stats.RecordFinish(Success(i, 0, 1, "", ""));
  }
  v1::GetStatsResponse response = stats.Get({});
  EXPECT_EQ(response.cluster().requests().succeeded(), 5);
  EXPECT_EQ(response.cluster().ttft_seconds().count(), 3);
  EXPECT_DOUBLE_EQ(response.cluster().ttft_seconds().mean(), 4);  // 3, 4, 5
  EXPECT_EQ(response.cluster().ttft_seconds().p50(), 4);
  EXPECT_EQ(response.cluster().completion_tokens(), 5);  // totals are not windowed
}

}  // namespace
}  // namespace pdserve::router
