#pragma once
// The router's Prometheus metrics (docs/metrics.md lists them): request latencies as
// histograms, requests and tokens as counters, fed by RouterStats as the relay records each
// request (this is its StatsListener); the queue, healthy workers and decode workers' KV blocks
// as gauges set from their owners at each scrape (metrics::ScrapeRegistry says why).
// RenderText() is the body of the router's GET /metrics.
//
// What a finished request contributes (the same rules as GetStats, so the two views agree):
//   - pdserve_requests_total{outcome, finish_reason}: every request, refused ones included;
//   - TTFT: every success, and a failed or cancelled request that had sent a chunk;
//   - E2E, queue time and the token counters: successes (only they have usage);
//   - inter-token latency: each gap between two tokens the relay received, whatever the end.
//
// Thread-safe: updates are atomic and take no lock; RenderText may run on any thread.

#include <string>

#include "common/metrics/scrape_registry.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "router/relay.h"
#include "router/router_stats.h"
#include "router/worker_registry.h"

namespace pdserve::router {

class RouterMetrics final : public StatsListener {
 public:
  // `workers` outlives this (its gauges read the registry's snapshot at each scrape).
  explicit RouterMetrics(const WorkerRegistry& workers);

  // Adds the gauges of `relay`'s queue and in-flight requests; `relay` outlives this. Once.
  void TrackRelay(const Relay& relay);

  // Every metric in the Prometheus text format 0.0.4 (metrics::kTextContentType).
  std::string RenderText() const { return metrics_.RenderText(); }

  void OnFinish(const RequestRecord& record) override;
  void OnTransfer(const v1::KvTransferReport& report) override;
  void OnTokenGap(double seconds) override;

 private:
  metrics::ScrapeRegistry metrics_;
  prometheus::Family<prometheus::Counter>& requests_;
  // requests_'s children that OnFinish uses, made up front (Family::Add locks): succeeded by
  // request::FinishReason (indexed by its value: length, stop, eos), failed, cancelled.
  prometheus::Counter* succeeded_[3] = {};
  prometheus::Counter& failed_;
  prometheus::Counter& cancelled_;
  prometheus::Counter& prompt_tokens_;
  prometheus::Counter& generation_tokens_;
  prometheus::Histogram& ttft_;
  prometheus::Histogram& inter_token_;
  prometheus::Histogram& e2e_;
  prometheus::Histogram& queue_;
  prometheus::Histogram& kv_transfer_seconds_;
  prometheus::Histogram& kv_transfer_bytes_;
};

}  // namespace pdserve::router
