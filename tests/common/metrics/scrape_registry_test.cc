// A ScrapeRegistry's render: refreshers set their gauges before every render, in the order they
// were added, and may keep state between scrapes; what the registry's families hold is
// serialized in the text format, histogram buckets as DecadeBuckets prints them.

#include "common/metrics/scrape_registry.h"

#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "common/metrics/buckets.h"
#include "prometheus/counter.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "tests/support/metrics_sample.h"

namespace pdserve::metrics {
namespace {

using test_support::BucketBounds;
using test_support::MetricSample;
using test_support::MetricTypes;

TEST(ScrapeRegistryTest, RefreshersSetTheirGaugesBeforeEachRender) {
  ScrapeRegistry metrics;
  prometheus::Gauge& queued = prometheus::BuildGauge()
                                  .Name("pdserve_test_queued")
                                  .Help("Waiting.")
                                  .Register(metrics.registry())
                                  .Add({});
  int queue_length = 3;
  int n_refreshes = 0;
  metrics.AddRefresher([&] {
    ++n_refreshes;
    queued.Set(queue_length);
  });
  EXPECT_EQ(MetricSample(metrics.RenderText(), "pdserve_test_queued"), 3);
  queue_length = 7;
  EXPECT_EQ(MetricSample(metrics.RenderText(), "pdserve_test_queued"), 7);
  EXPECT_EQ(n_refreshes, 2);
}

TEST(ScrapeRegistryTest, RefreshersRunInOrderAndKeepState) {
  ScrapeRegistry metrics;
  prometheus::Gauge& scrapes = prometheus::BuildGauge()
                                   .Name("pdserve_test_scrapes")
                                   .Help("Renders so far.")
                                   .Register(metrics.registry())
                                   .Add({});
  std::vector<int> order;
  metrics.AddRefresher([&order] { order.push_back(1); });
  metrics.AddRefresher([&order, &scrapes, n = 0]() mutable {
    order.push_back(2);
    scrapes.Set(++n);
  });
  metrics.RenderText();
  const std::string text = metrics.RenderText();
  EXPECT_EQ(MetricSample(text, "pdserve_test_scrapes"), 2) << text;
  EXPECT_EQ(order, (std::vector<int>{1, 2, 1, 2}));
}

TEST(ScrapeRegistryTest, RendersEachFamilyWithItsTypeAndBuckets) {
  ScrapeRegistry metrics;
  prometheus::Family<prometheus::Counter>& requests = prometheus::BuildCounter()
                                                          .Name("pdserve_test_requests_total")
                                                          .Help("Requests.")
                                                          .Register(metrics.registry());
  requests.Add({{"outcome", "failed"}, {"finish_reason", "none"}}).Increment(2);
  prometheus::Histogram& latency = prometheus::BuildHistogram()
                                       .Name("pdserve_test_seconds")
                                       .Help("Latency.")
                                       .Register(metrics.registry())
                                       .Add({}, DecadeBuckets(0.001, 0.01));
  for (double v : {0.0005, 0.001, 0.003, 2.0}) latency.Observe(v);
  const std::string text = metrics.RenderText();
  EXPECT_EQ(MetricTypes(text),
            (std::map<std::string, std::string>{{"pdserve_test_requests_total", "counter"},
                                                {"pdserve_test_seconds", "histogram"}}))
      << text;
  EXPECT_NE(text.find("# HELP pdserve_test_seconds Latency.\n"), std::string::npos) << text;
  EXPECT_EQ(MetricSample(text,
                         "pdserve_test_requests_total{outcome=\"failed\",finish_reason=\"none\"}"),
            2);
  EXPECT_EQ(BucketBounds(text, "pdserve_test_seconds"),
            (std::vector<std::string>{"0.001", "0.0025", "0.005", "0.01", "+Inf"}));
  // A value on a bound counts in that bucket (`le`: less or equal).
  EXPECT_EQ(MetricSample(text, "pdserve_test_seconds_bucket{le=\"0.001\"}"), 2);
  EXPECT_EQ(MetricSample(text, "pdserve_test_seconds_bucket{le=\"0.005\"}"), 3);
  EXPECT_EQ(MetricSample(text, "pdserve_test_seconds_bucket{le=\"+Inf\"}"), 4);
  EXPECT_EQ(MetricSample(text, "pdserve_test_seconds_count"), 4);
}

TEST(ScrapeRegistryTest, RendersWhileOthersUpdate) {
  ScrapeRegistry metrics;
  prometheus::Counter& counter = prometheus::BuildCounter()
                                     .Name("pdserve_test_total")
                                     .Help("Counted.")
                                     .Register(metrics.registry())
                                     .Add({});
  std::atomic<int> n_counted{0};
  prometheus::Gauge& gauge = prometheus::BuildGauge()
                                 .Name("pdserve_test_counted")
                                 .Help("Counted so far.")
                                 .Register(metrics.registry())
                                 .Add({});
  metrics.AddRefresher([&] { gauge.Set(n_counted.load()); });
  constexpr int kThreads = 4;
  constexpr int kPerThread = 5000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kPerThread; ++i) {
        counter.Increment();
        n_counted.fetch_add(1);
      }
    });
  }
  std::thread scraper([&] {
    for (int i = 0; i < 50; ++i) {
      const std::string text = metrics.RenderText();
      ASSERT_GE(MetricSample(text, "pdserve_test_total"), 0) << text;
    }
  });
  for (std::thread& t : threads) t.join();
  scraper.join();
  const std::string text = metrics.RenderText();
  EXPECT_EQ(MetricSample(text, "pdserve_test_total"), kThreads * kPerThread);
  EXPECT_EQ(MetricSample(text, "pdserve_test_counted"), kThreads * kPerThread);
}

}  // namespace
}  // namespace pdserve::metrics
