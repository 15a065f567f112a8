#pragma once
// One process's Prometheus metrics: a prometheus::Registry (prometheus-cpp's core library) whose
// families the process registers with prometheus::BuildCounter / BuildGauge / BuildHistogram,
// plus refreshers that set the gauges whose values live elsewhere (a queue's length, a pool's
// free blocks, the healthy workers) right before each scrape, and RenderText, the body of GET
// /metrics (metrics_http.h serves it).
//
//   metrics::ScrapeRegistry metrics;
//   prometheus::Counter& succeeded = prometheus::BuildCounter()
//       .Name("pdserve_requests_total").Help("Requests finished.").Register(metrics.registry())
//       .Add({{"outcome", "succeeded"}});  // keep the reference: Family::Add locks
//   prometheus::Gauge& queued = ...;
//   metrics.AddRefresher([&queued, &queue] { queued.Set(queue.size()); });
//
// Why refresh at scrape time rather than set where the value changes: the value's owner (the
// scheduler, the relay, the worker registry) is the one source of truth that GetStats and
// heartbeats also read, so a sample taken at the scrape cannot drift from it, and the owner's
// hot paths carry no metrics calls.
//
// Thread-safe: counters, gauges and histograms may be updated from any thread while another
// renders (prometheus-cpp's are atomic). RenderText serializes renders: refreshers run one at a
// time, under its lock, so a refresher may keep state between scrapes without a lock of its own.

#include <functional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "prometheus/registry.h"

namespace pdserve::metrics {

class ScrapeRegistry {
 public:
  ScrapeRegistry() = default;
  ScrapeRegistry(const ScrapeRegistry&) = delete;
  ScrapeRegistry& operator=(const ScrapeRegistry&) = delete;

  // Families registered here live as long as this (and so do their children, unless removed):
  // references to them may be kept.
  prometheus::Registry& registry() { return registry_; }

  // `refresh` runs at the start of every RenderText, after those added before it. It must not
  // call RenderText.
  void AddRefresher(std::function<void()> refresh);

  // Runs the refreshers, then every family in the text exposition format 0.0.4
  // (kTextContentType). A labelled family without children is left out.
  std::string RenderText() const;

 private:
  prometheus::Registry registry_;
  mutable absl::Mutex mu_;
  std::vector<std::function<void()>> refreshers_ ABSL_GUARDED_BY(mu_);
};

}  // namespace pdserve::metrics
